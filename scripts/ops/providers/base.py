"""The interface every cluster provider implements (kind's pkg/cluster/internal/providers, in Python).

A provider knows how to make one kind of cluster exist and go away: it never installs
workloads on it. The steps every cluster needs afterwards (pod network where the provider
asks for one, nodes Ready, metrics-server, a default StorageClass) are ops.actions, and
ops.cluster is the one place that composes provider and actions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol


class Provider(Protocol):
    name: str
    pod_subnet: str
    service_subnet: str

    def can_run(self) -> tuple[bool, str]:
        """Whether this provider can bring its cluster up on this machine, and why (not)."""
        ...

    def up(self) -> Path:
        """Create the cluster (or adopt the one that is up); returns its kubeconfig."""
        ...

    def down(self) -> None:
        """Delete the cluster and everything it left on the machine; harmless when none is up."""
        ...

    def healthy(self) -> bool:
        """The cluster is up and answering (what `auto` adopts and `up` leaves unchanged)."""
        ...

    def status(self) -> str:
        """A human-readable account: nodes, pods, where the logs are."""
        ...

    def load_images(self, images: Sequence[str]) -> list[str]:
        """Put these local Docker images on every node; returns the ones that had to be loaded."""
        ...

    def kubeconfig(self) -> Path: ...

    @property
    def needs_pod_network(self) -> bool:
        """True when the cluster comes up without a CNI and ops.actions.pod_network must add one."""
        ...

    @property
    def expected_nodes(self) -> int:
        """How many nodes a healthy cluster of this provider has (0: whatever is there)."""
        ...

    @property
    def host_volumes_dir(self) -> Path | None:
        """Where a local-path StorageClass may keep volumes, if the provider needs one added."""
        ...
