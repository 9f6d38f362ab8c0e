"""Cluster providers: kind, local, existing, each behind one interface (providers.base.Provider).

Providers import the layers below them (pins, paths, kube, docker, builders) and never
ops.actions, ops.cluster or the commands above those.
"""

from __future__ import annotations

from ops.providers.base import Provider
from ops.providers.existing import ExistingProvider
from ops.providers.kind import KindProvider
from ops.providers.local import LocalProvider

NAMES = ("kind", "local", "existing")


def get(name: str) -> Provider:
    if name == "kind":
        return KindProvider()
    if name == "local":
        return LocalProvider()
    if name == "existing":
        return ExistingProvider()
    raise ValueError(f"unknown provider {name!r}; known: {', '.join(NAMES)}")


__all__ = ["NAMES", "ExistingProvider", "KindProvider", "LocalProvider", "Provider", "get"]
