"""Remove the iptables rules the cluster created, and nothing else.

Ours are: every KUBE-* chain (kubelet, kube-proxy), our own TFMS-* chains, the CNI-* chains whose jump rules
carry our CNI network's name (bridge masquerade, portmap DNAT), and portmap's shared
CNI-HOSTPORT-* chains once no other network's DNAT chain is left in them. Docker's
chains and any other rule stay untouched. One `iptables-restore --noflush` per table:
flush our chains, delete the rules that jump to them, delete the chains.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field

from ops.local_cluster import layout

BINARIES = (("iptables-save", "iptables-restore"), ("ip6tables-save", "ip6tables-restore"))
SHARED_PORTMAP_CHAINS = ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ")
OUR_PREFIXES = ("KUBE-", "TFMS-")
FORWARD_CHAIN = "TFMS-LOCAL-FORWARD"
OUTPUT_CHAIN = "TFMS-LOCAL-OUTPUT"


@dataclass
class Table:
    name: str
    chains: list[str] = field(default_factory=list)
    rules: list[tuple[str, str]] = field(default_factory=list)  # (chain, rule spec after "-A CHAIN ")


def parse_save(text: str) -> list[Table]:
    tables: list[Table] = []
    for line in text.splitlines():
        if line.startswith("*"):
            tables.append(Table(line[1:]))
        elif line.startswith(":") and tables:
            tables[-1].chains.append(line[1:].split()[0])
        elif line.startswith("-A ") and tables:
            _, chain, spec = line.split(" ", 2)
            tables[-1].rules.append((chain, spec))
    return tables


def jump_target(spec: str) -> str | None:
    match = re.search(r"(?:^|\s)-[jg] (\S+)", spec)
    return match.group(1) if match else None


def our_chains(table: Table) -> set[str]:
    network_tag = f'\\"{layout.CNI_NETWORK}\\"'
    ours = {chain for chain in table.chains if chain.startswith(OUR_PREFIXES)}
    for _, spec in table.rules:
        target = jump_target(spec)
        if target and target.startswith("CNI-") and network_tag in spec:
            ours.add(target)
    if "CNI-HOSTPORT-DNAT" in table.chains:
        foreign_dnat = [
            spec
            for chain, spec in table.rules
            if chain == "CNI-HOSTPORT-DNAT" and jump_target(spec) not in ours
        ]
        if not foreign_dnat:
            ours.update(chain for chain in SHARED_PORTMAP_CHAINS if chain in table.chains)
    return ours


def removal_script(table: Table) -> str | None:
    ours = our_chains(table)
    if not ours:
        return None
    lines = [f"*{table.name}"]
    lines += [f"-F {chain}" for chain in sorted(ours)]
    lines += [
        f"-D {chain} {spec}" for chain, spec in table.rules if chain not in ours and jump_target(spec) in ours
    ]
    lines += [f"-X {chain}" for chain in sorted(ours)]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def leftovers() -> list[str]:
    """Rules and chains of ours still present (empty when the machine is clean)."""
    found = []
    for save, _ in BINARIES:
        result = subprocess.run([save], capture_output=True, text=True, check=False)
        for table in parse_save(result.stdout):
            ours = our_chains(table)
            found += [f"{save} {table.name}: chain {chain}" for chain in sorted(ours)]
    return found


def remove_ours() -> list[str]:
    """Delete our chains from every table of iptables and ip6tables; returns what was removed."""
    removed = []
    for save, restore in BINARIES:
        result = subprocess.run([save], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            continue
        for table in parse_save(result.stdout):
            script = removal_script(table)
            if script is None:
                continue
            applied = subprocess.run(
                [restore, "--noflush"], input=script, capture_output=True, text=True, check=False
            )
            if applied.returncode != 0:
                raise RuntimeError(
                    f"{restore} failed removing our chains from {table.name}: {applied.stderr.strip()}\n"
                    f"script:\n{script}"
                )
            removed += [f"{table.name}/{chain}" for chain in sorted(our_chains(table))]
    return removed


def install_guards() -> None:
    """Our filter rules: keep cluster-internal traffic on this machine, and let the pod bridge forward.

    Service and pod addresses that were not translated (kube-proxy not synced yet, no such
    Service) are rejected at once instead of leaving through the default route: on these
    machines an upstream proxy answers any :443, and an early aggregator connection to
    metrics-server's ClusterIP stuck to it and got 404s. Docker sets the FORWARD policy to
    DROP and, with br_netfilter, even pod-to-pod frames pass FORWARD, so the bridge's
    traffic is accepted explicitly (kube-proxy only accepts marked or established flows).
    """
    reject = "-j REJECT --reject-with icmp-port-unreachable"
    outside_bridge = f"! -o {layout.BRIDGE}"
    # In OUTPUT, -o still names the interface routed *before* kube-proxy's DNAT: skip DNATed flows.
    not_dnat = "-m conntrack ! --ctstate DNAT"
    script = (
        "*filter\n"
        f":{FORWARD_CHAIN} - [0:0]\n"
        f":{OUTPUT_CHAIN} - [0:0]\n"
        f"-A {FORWARD_CHAIN} -d {layout.SERVICE_SUBNET} {reject}\n"
        f"-A {FORWARD_CHAIN} -d {layout.POD_SUBNET} {outside_bridge} {reject}\n"
        f"-A {FORWARD_CHAIN} -i {layout.BRIDGE} -j ACCEPT\n"
        f"-A {FORWARD_CHAIN} -o {layout.BRIDGE} -j ACCEPT\n"
        f"-A {OUTPUT_CHAIN} -d {layout.SERVICE_SUBNET} {reject}\n"
        f"-A {OUTPUT_CHAIN} -d {layout.POD_SUBNET} {outside_bridge} {not_dnat} {reject}\n"
        f'-I FORWARD 1 -m comment --comment "tf-model-server local cluster" -j {FORWARD_CHAIN}\n'
        f'-I OUTPUT 1 -m comment --comment "tf-model-server local cluster" -j {OUTPUT_CHAIN}\n'
        "COMMIT\n"
    )
    subprocess.run(
        ["iptables-restore", "--noflush"], input=script, text=True, check=True, capture_output=True
    )
