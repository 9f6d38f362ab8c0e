"""The guarantees the suites assert, as checks over the prober's record that can fail.

Pure functions over RequestRecords and a prober's Ledger; each raises SLOViolation with a
message that names what broke, and the records that show it. harness.scenario turns a
violation into a test failure with the cluster's side of the story.

- **A window means something only with enough requests in it.** Every window is judged
  per prober and must hold at least POPULATION_FRACTION of rate x length requests, and
  never fewer than POPULATION_FLOOR: "0 failed" over an empty window is not a result.
- **The prober must be sound before its record is believed** (`sound`): it stopped (the
  record is complete), every scheduled request has exactly one record (sequence numbers
  0..n-1, sent == recorded), none was refused by the prober itself (ProberOverload,
  ProberError), and none left more than SCHEDULE_LAG_LIMIT_S after its scheduled time:
  a prober that falls behind its schedule is closed-loop (a concurrency cap or a starved
  scheduler) and applies less load exactly when the backend stalls.
- **Backends that die without draining** (a SIGKILLed server, a node that vanishes; one
  pod or many: a `Loss`) may cost only what could have been on them. `bounded_loss`
  measures the lost pods' share of the traffic from the prober's own record before the
  loss (X-Served-By), and allows, over the exposure window (from the loss until the
  Service stopped routing to the last lost pod, plus kube-proxy's propagation, capped),
  at most share x requests + Z_SIGMA binomial standard deviations (kube-proxy picks an
  endpoint at random per connection) + the requests in flight at the loss. A failed
  request outside that set fails the check, and so does an exposure longer than the cap.
  A whole-Service outage breaks the bound: with a share of 1/3, a window of 2.5 s at
  30 req/s (75 requests) allows 25 + 17 + in flight, while an outage fails all 75 and
  the ones after the window too. With Z_SIGMA = 4 an honest run exceeds the bound with a
  probability around 3e-5.
- **Stale NAT after the exposure window.** A connection kube-proxy sent to a lost pod
  that never answered (a node that vanished) leaves a SYN_SENT conntrack entry on the
  node that NATed it, for nf_conntrack_tcp_timeout_syn_sent (Linux: 120 s). A later new
  connection with the same 5-tuple follows that entry to the dead pod, whatever the
  Service's rules say by then, and its SYN refreshes the entry for another 120 s. Through
  kind's published ports every connection reaches the node from docker-proxy's address
  with a port the host's kernel picks for that destination: it walks the ephemeral range
  in steps of 2 (one parity) with random skips, so it wraps within a minute here and a
  new connection lands on one of the S stale ports with probability about
  S / (ports / 2). Measured on the kind cluster: 520-544 entries to the lost pod, alive
  120 s after their last SYN, and the fresh-connection failures after the Service stopped
  routing to it (66-200 per run) were those collisions. The bound follows from that: with
  r fresh connections per second, an entry is hit m = r x 120 s / (ports / 2) times in its
  lifetime, each hit living another lifetime, so S entries cause S x m / (1 - m)
  collisions in expectation (a branching process that dies out for m < 1). After the
  exposure window a failed request on a fresh connection is allowed within that
  expectation + Z_SIGMA x its square root, and only within STALE_NAT_LIFETIME_S of the
  exposure window or of an earlier such collision (an entry lives that long after its
  last SYN), and in no 5-second window beyond the binomial bound of STALE_BAND_HIT: the
  stale entries sit in a band of the port walk (the ports it took during the exposure),
  so collisions come in bursts as later sweeps cross that band (seen: 31 of 150 fresh
  connections in one 5 s window), and inside it a sweep lands on a stale port with the
  walk's own density, about 2 in 9 (and MAX_COLLISION_RUN of them in a row almost never).
  Requests on reused connections get no allowance at all. A whole-Service outage fails
  nearly every request of its windows and breaks it.
- **Stale NAT after an outage of every pod, seen from this machine.** While a Service has
  no endpoint, kube-proxy REJECTs its NodePort in the filter table's INPUT chain. A SYN this
  machine sends to a localhost NodePort has already passed POSTROUTING, where conntrack
  confirmed its entry (no NAT, SYN_SENT, 120 s), before INPUT refuses it; from another
  host the refusal comes before confirmation and leaves nothing. A later connection from
  the same source port follows that entry, un-NATed, to the node's own closed port and is
  refused, and refreshes the entry, for as long as the port walk keeps coming back (it
  wraps within a minute). Measured on the local cluster: after every pod was deleted, the
  ~240 connections refused in the outage left ~300 SYN_SENT entries, and in 2 runs of 6
  one in five fresh connections was refused for the 7 s after the new pods were Ready,
  while the keep-alive prober, on connections opened after the outage, lost none.
  `recovered` judges those failures as `bounded_loss` judges a node loss's: only
  refused fresh connections, chained within the entries' lifetime, within the same
  allowance, the same 5-second bursts, and never MAX_COLLISION_RUN in a row.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.prober import Ledger, RequestRecord
from harness.slo import failures, first_success_after, in_flight_at

POPULATION_FRACTION = 0.8
POPULATION_FLOOR = 10
SCHEDULE_LAG_LIMIT_S = 1.0
Z_SIGMA = 4.0
# kube-proxy rewrites its rules at most once per --iptables-min-sync-period (1 s by default)
# after an EndpointSlice changes: a connection opened within that time can still reach a
# pod that has just left the Service.
KUBE_PROXY_PROPAGATION_S = 2.0
# Linux's nf_conntrack_tcp_timeout_syn_sent (kube-proxy does not change it).
STALE_NAT_LIFETIME_S = 120.0
# Linux's connect() port choice (net/ipv4/inet_hashtables.c, __inet_hash_connect) moves its
# per-destination offset by 2 + 2 x a random 0..7 per connection, 9 ports on average: of the
# ports of its parity a sweep lands on 2 in 9. Sweeping a band an earlier sweep laid stale
# entries in, a connection lands on one of them with about that probability.
STALE_BAND_HIT = 2 / 9
# How a stale entry without NAT fails a connection: the node's own port refuses it.
REFUSED = "ConnectionRefusedError"
# Consecutive collisions: (2/9)^10 = 3e-7, so over a few hundred fresh connections an honest
# run shows 10 in a row with a probability around 1e-4; a 0.33 s outage at 30/s does.
MAX_COLLISION_RUN = 10


def local_port_range_size(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> int:
    """How many source ports a client on this machine picks from (the host's ephemeral range)."""
    low, high = (int(word) for word in Path(path).read_text().split())
    return high - low + 1


class SLOViolation(AssertionError):
    """A guarantee did not hold; `records` are the requests that show it."""

    def __init__(self, message: str, records: Iterable[RequestRecord] = ()) -> None:
        super().__init__(message)
        self.records = tuple(records)


@dataclass(frozen=True)
class Window:
    """A named span of a test, [start, end) in epoch seconds; requests belong by send time."""

    label: str
    start: float
    end: float

    @property
    def length_s(self) -> float:
        return max(0.0, self.end - self.start)

    def of(self, records: Iterable[RequestRecord]) -> list[RequestRecord]:
        return [record for record in records if self.start <= record.sent_at < self.end]


def required_population(rate_per_s: float, window: Window) -> int:
    return max(POPULATION_FLOOR, math.floor(POPULATION_FRACTION * rate_per_s * window.length_s))


def populated(
    records: Sequence[RequestRecord], window: Window, rate_per_s: float, prober: str
) -> list[RequestRecord]:
    """The prober's requests in the window; a violation when there are too few to mean anything."""
    inside = window.of(records)
    need = required_population(rate_per_s, window)
    if len(inside) < need:
        raise SLOViolation(
            f"{prober}: only {len(inside)} requests were sent {window.label} "
            f"({window.length_s:.1f}s at {rate_per_s:g}/s needs at least {need}): "
            "the window proves nothing",
            inside,
        )
    return inside


def no_failures(
    records: Sequence[RequestRecord], window: Window, rate_per_s: float, prober: str
) -> list[RequestRecord]:
    """0 failed requests in a populated window."""
    inside = populated(records, window, rate_per_s, prober)
    failed = failures(inside)
    if failed:
        raise SLOViolation(
            f"{prober}: {len(failed)} of {len(inside)} requests failed {window.label} (SLO: 0 failed)", inside
        )
    return inside


def seq_ranges(seqs: Sequence[int], limit: int = 8) -> str:
    """`[3, 4, 5, 9]` -> "3-5, 9"."""
    runs: list[list[int]] = []
    for value in sorted(seqs):
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    text = [f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]) for run in runs]
    more = f", … ({len(text) - limit} more)" if len(text) > limit else ""
    return ", ".join(text[:limit]) + more


def sound(ledger: Ledger, lag_limit_s: float = SCHEDULE_LAG_LIMIT_S) -> None:
    """The prober's record is complete and its load was the load it was asked for."""
    problems: list[str] = []
    shown: list[RequestRecord] = []
    if ledger.stopped_at is None:
        problems.append("it is still running, so its record is incomplete (stop it before judging it)")
    counts = Counter(record.seq for record in ledger.records)
    missing = sorted(set(range(ledger.scheduled)) - counts.keys())
    duplicated = sorted(seq for seq, n in counts.items() if n > 1)
    unscheduled = sorted(seq for seq in counts if not 0 <= seq < ledger.scheduled)
    if missing:
        problems.append(
            f"{len(missing)} of {ledger.scheduled} scheduled requests have no record "
            f"(seq {seq_ranges(missing)}): dropped"
        )
    if duplicated:
        problems.append(f"seq {seq_ranges(duplicated)} recorded more than once")
    if unscheduled:
        problems.append(f"records for seq {seq_ranges(unscheduled)}, which were never scheduled")
    if missing or duplicated or unscheduled or len(ledger.records) != ledger.scheduled:
        problems.append(
            f"sent {ledger.scheduled} != recorded {len(ledger.records)}: sequence numbers are not 0..n-1"
        )
    refused = [record for record in ledger.records if record.prober_fault]
    if refused:
        kinds = Counter((record.error or "").split(":")[0] for record in refused)
        problems.append(
            f"{len(refused)} requests were never sent by the prober itself "
            f"({', '.join(f'{k} {n}' for k, n in kinds.items())}): {refused[0].error}"
        )
        shown += refused
    late = [record for record in ledger.records if record.sent_at - record.scheduled_at > lag_limit_s]
    if late:
        worst = max(late, key=lambda record: record.sent_at - record.scheduled_at)
        problems.append(
            f"{len(late)} requests left more than {lag_limit_s:g}s after their scheduled time "
            f"(worst: seq {worst.seq}, {worst.sent_at - worst.scheduled_at:.1f}s late): the prober fell "
            "behind its schedule, so it was not open loop (a concurrency cap or a starved scheduler) "
            "and did not apply the load the SLO assumes"
        )
        shown += late
    if problems:
        raise SLOViolation(
            f"prober {ledger.prober} ({ledger.transport}) cannot be believed: " + "; ".join(problems), shown
        )


def traffic_share(records: Sequence[RequestRecord], pods: Collection[str], window: Window) -> float:
    """The fraction of the window's successful answers that came from `pods` (X-Served-By)."""
    answered = [record for record in window.of(records) if record.ok]
    if not answered:
        raise SLOViolation(
            f"no successful answer {window.label}: the traffic share of {sorted(pods)} is unknown"
        )
    return sum(1 for record in answered if record.served_by in pods) / len(answered)


@dataclass(frozen=True)
class Loss:
    """Pods that stopped without draining, and when the Service stopped routing to them."""

    label: str  # e.g. "SIGKILL of pod-a" or "node worker-2 lost"
    pods: frozenset[str]
    lost_at: float
    unrouted_at: float  # the last of them left the EndpointSlices


@dataclass(frozen=True)
class LossBudget:
    """What bounded_loss measured and allowed for one prober."""

    prober: str
    share: float
    exposure: Window
    in_flight: int
    exposed: int
    allowed: int
    failed: int
    stale_entries: int = 0
    late_fresh: int = 0
    late_allowed: int = 0
    late_failed: int = 0

    def describe(self) -> str:
        late = (
            f"; after it {self.late_failed} failed of {self.late_fresh} fresh connections "
            f"(stale-NAT allowance {self.late_allowed} from {self.stale_entries} entries)"
        )
        return (
            f"{self.failed - self.late_failed} failed of {self.exposed} sent in {self.exposure.length_s:.1f}s"
            f" + {self.in_flight} in flight (allowed {self.allowed}: share {self.share:.2f}){late}"
        )


def binomial_upper(trials: int, p: float, z: float) -> int:
    return math.ceil(trials * p + z * math.sqrt(trials * p * (1.0 - p)))


def fresh_failures(records: Sequence[RequestRecord], window: Window) -> int:
    """Failed requests on fresh connections sent in `window`: each may leave a stale NAT entry."""
    return sum(1 for record in failures(window.of(records)) if not record.reused)


def stale_nat_entries(records: Sequence[RequestRecord], loss: Loss, propagation_s: float) -> int:
    """Fresh connections that failed while the Service still routed to the lost pods (one entry each)."""
    return fresh_failures(records, Window("exposure", loss.lost_at, loss.unrouted_at + propagation_s))


def stale_nat_collisions(
    late_failures: Sequence[RequestRecord], exposure_end: float, lifetime_s: float
) -> list[RequestRecord]:
    """The late fresh-connection failures a stale entry can explain: each within `lifetime_s` of the
    exposure window's end or of an earlier one (a hit refreshes the entry it hits)."""
    explained: list[RequestRecord] = []
    alive_until = exposure_end + lifetime_s
    for record in sorted(late_failures, key=lambda r: r.sent_at):
        if record.sent_at > alive_until:
            break
        explained.append(record)
        alive_until = max(alive_until, record.sent_at + lifetime_s)
    return explained


def stale_nat_allowance(
    stale: int, late_fresh: Sequence[RequestRecord], ports: int, lifetime_s: float, z: float
) -> int:
    """Collisions S stale entries cause in expectation (module docstring), + z sigma."""
    if not stale or not late_fresh:
        return 0
    span = max(1.0, late_fresh[-1].sent_at - late_fresh[0].sent_at)
    hits_per_lifetime = (len(late_fresh) / span) * lifetime_s / (ports / 2)
    if hits_per_lifetime >= 1:
        return len(late_fresh)  # the entries would live for ever: nothing is excluded
    expected = stale * hits_per_lifetime / (1 - hits_per_lifetime)
    return math.ceil(expected + z * math.sqrt(expected))


def judge_stale_nat(
    prober: str,
    late_fresh: Sequence[RequestRecord],
    collisions: Sequence[RequestRecord],
    stale: int,
    late: Window,
    ports: int,
    z: float,
    lifetime_s: float = STALE_NAT_LIFETIME_S,
) -> int:
    """Fresh-connection failures in `late` that `stale` entries may explain, or a violation.

    Collisions come in bursts, when the port walk sweeps the band of ports the stale entries
    took (module docstring), but even inside the band it lands on one at most STALE_BAND_HIT
    of the time, and on one after another about as rarely as coin flips of that bias: a
    5-second window failing beyond that, or MAX_COLLISION_RUN failures in a row, is an
    outage, not stale NAT. Returns the allowance.
    """
    since = late.start
    for start in range(0, math.ceil(max((r.sent_at for r in late_fresh), default=since) - since), 5):
        burst = Window(f"{start}-{start + 5}s {late.label}", since + start, since + start + 5)
        sent = burst.of(late_fresh)
        collided = burst.of(collisions)
        limit = min(stale, binomial_upper(len(sent), STALE_BAND_HIT, z)) if stale else 0
        if len(collided) > limit:
            raise SLOViolation(
                f"{prober}: {len(collided)} of {len(sent)} fresh connections failed {burst.label}, "
                f"more than the {limit} its {stale} stale NAT entries could catch ({ports} source ports, "
                f"+ {z:g} sigma): the Service failed beyond them",
                collided,
            )
    run = longest_failing_run(late_fresh)
    if len(run) >= MAX_COLLISION_RUN:
        raise SLOViolation(
            f"{prober}: {len(run)} fresh connections in a row failed {late.label}: stale NAT entries "
            f"catch one at most {STALE_BAND_HIT:.2f} of the time, so {MAX_COLLISION_RUN} in a row is an "
            "outage of the Service",
            run,
        )
    allowed = stale_nat_allowance(stale, late_fresh, ports, lifetime_s, z)
    if len(collisions) > allowed:
        raise SLOViolation(
            f"{prober}: {len(collisions)} requests on fresh connections failed {late.label}, "
            f"more than the {allowed} that its {stale} stale NAT entries explain "
            f"({len(late_fresh)} fresh connections, {ports} source ports, + {z:g} sigma)",
            collisions,
        )
    return allowed


def longest_failing_run(records: Sequence[RequestRecord]) -> list[RequestRecord]:
    """The longest stretch of consecutive failed requests, in send order."""
    ordered = sorted(records, key=lambda r: r.sent_at)
    best_start = best_length = start = 0
    for index, record in enumerate(ordered):
        if record.ok:
            start = index + 1
        elif index + 1 - start > best_length:
            best_start, best_length = start, index + 1 - start
    return ordered[best_start : best_start + best_length]


def bounded_loss(
    records: Sequence[RequestRecord],
    loss: Loss,
    rate_per_s: float,
    prober: str,
    before: Window,
    max_exposure_s: float,
    propagation_s: float = KUBE_PROXY_PROPAGATION_S,
    z: float = Z_SIGMA,
    source_ports: int | None = None,
    stale_nat_lifetime_s: float = STALE_NAT_LIFETIME_S,
    stale_entries: int | None = None,
    connection_share: float | None = None,
) -> LossBudget:
    """Failures bounded by what could have been on the lost pods (see the module docstring).

    `connection_share` is the lost pods' share of new connections (kube-proxy picks per
    connection); a keep-alive prober needs it from elsewhere (a new-connection prober's
    record), since its own traffic follows the few connections it holds, not the pods.
    """
    if before.end > loss.lost_at:
        raise ValueError(f"the share window ({before.label}) must end before the loss ({loss.label})")
    observed_share = traffic_share(populated(records, before, rate_per_s, prober), loss.pods, before)
    share = observed_share if connection_share is None else connection_share
    routed_s = loss.unrouted_at + propagation_s - loss.lost_at
    pods = ", ".join(sorted(loss.pods))
    if routed_s > max_exposure_s:
        raise SLOViolation(
            f"after {loss.label} the Service could still route to {pods} for {routed_s:.1f}s "
            f"(EndpointSlice update {loss.unrouted_at - loss.lost_at:.1f}s + kube-proxy {propagation_s:g}s; "
            f"cap {max_exposure_s:g}s)",
            failures(records),
        )
    exposure = Window(f"while the Service could still route to {pods}", loss.lost_at, loss.lost_at + routed_s)
    exposed = populated(records, exposure, rate_per_s, prober)
    in_flight = in_flight_at(records, loss.lost_at)
    explained = {record.seq for record in [*exposed, *in_flight]}
    failed = failures(records)
    # Stale NAT entries left by the exposure window's unanswered connections (module docstring).
    # Every prober through the same NodePort shares docker-proxy's port walk, so the entries any
    # of them left count for each (the scenario passes the total); alone, its own.
    own_stale = fresh_failures(records, exposure)
    stale = own_stale if stale_entries is None else max(stale_entries, own_stale)
    late_window = Window(f"after the Service stopped routing to {pods}", exposure.end, math.inf)
    late_fresh = [record for record in late_window.of(records) if not record.reused]
    late_failed = stale_nat_collisions(
        [r for r in failures(late_fresh) if r.seq not in explained], exposure.end, stale_nat_lifetime_s
    )
    ports = source_ports or local_port_range_size()
    explained |= {record.seq for record in late_failed}
    unexplained = [record for record in failed if record.seq not in explained]
    if unexplained:
        raise SLOViolation(
            f"{prober}: {len(unexplained)} failed requests could not have been on {pods}: neither in flight "
            f"at {loss.label} nor sent in the {exposure.length_s:.1f}s the Service still routed to them "
            f"nor a fresh connection within {stale_nat_lifetime_s:g}s of a stale NAT entry to them",
            unexplained,
        )
    collided = {record.seq for record in late_failed}
    failed = [record for record in failed if record.seq not in collided]
    # Each connection that lands on a lost pod costs its request; a new-connection prober opens
    # one per request, a keep-alive pool holds its slots and reopens one when it fails or closes.
    slots = {record.connection for record in records if record.connection is not None}
    trials = len(slots) + sum(1 for r in exposed if not r.reused) if slots else len(exposed)
    allowed = len(in_flight) + binomial_upper(trials, share, z)
    if len(failed) > allowed:
        raise SLOViolation(
            f"{prober}: {len(failed)} requests failed after {loss.label}, more than the {allowed} that could "
            f"have been on {pods}: their share of the traffic before ({share:.0%} of {before.label}) of the "
            f"{len(exposed)} sent {exposure.label} ({exposure.length_s:.1f}s) + {z:g} sigma + "
            f"{len(in_flight)} in flight at the loss. The Service failed beyond the lost pods "
            "(a whole-Service outage looks like this)",
            failed,
        )
    # Judged after the share, so that a whole-Service outage is named as that first.
    late_allowed = judge_stale_nat(
        prober, late_fresh, late_failed, stale, late_window, ports, z, stale_nat_lifetime_s
    )
    return LossBudget(
        prober,
        share,
        exposure,
        len(in_flight),
        len(exposed),
        allowed,
        len(failed) + len(late_failed),
        stale,
        len(late_fresh),
        late_allowed,
        len(late_failed),
    )


@dataclass(frozen=True)
class Recovery:
    """What `recovered` measured for one prober."""

    prober: str
    answers_again_at: float
    outage_failed: int
    stale_entries: int
    late_fresh: int
    late_allowed: int
    late_failed: int


def recovered(
    records: Sequence[RequestRecord],
    outage: Window,
    after: Window,
    rate_per_s: float,
    prober: str,
    stale_entries: int | None = None,
    source_ports: int | None = None,
    z: float = Z_SIGMA,
    stale_nat_lifetime_s: float = STALE_NAT_LIFETIME_S,
) -> Recovery:
    """Every pod was replaced: from `after` (its new pods Ready) on, nothing fails but the collisions
    with the stale NAT entries the outage left (module docstring), and `after` is populated.

    The Service answers again at the first success after the outage's last failure.
    """
    inside = populated(records, after, rate_per_s, prober)
    during = failures(outage.of(records))
    last = max((record.sent_at for record in during), default=None)
    answer = first_success_after(records, last) if last is not None else None
    if last is not None and answer is None:
        raise SLOViolation(f"{prober}: the Service never answered again after {outage.label}", during)
    own_stale = fresh_failures(records, outage)
    stale = own_stale if stale_entries is None else max(stale_entries, own_stale)
    late_fresh = [record for record in inside if not record.reused]
    refused = [r for r in failures(late_fresh) if (r.error or "").startswith(REFUSED)]
    collisions = stale_nat_collisions(refused, after.start, stale_nat_lifetime_s) if stale else []
    explained = {record.seq for record in collisions}
    unexplained = [record for record in failures(inside) if record.seq not in explained]
    if unexplained:
        raise SLOViolation(
            f"{prober}: {len(unexplained)} requests failed {after.label} that no stale NAT entry of the "
            f"outage explains ({stale} entries; only a refused fresh connection within "
            f"{stale_nat_lifetime_s:g}s of one can be)",
            unexplained,
        )
    ports = source_ports or local_port_range_size()
    allowed = judge_stale_nat(prober, late_fresh, collisions, stale, after, ports, z, stale_nat_lifetime_s)
    return Recovery(
        prober,
        answer.sent_at if answer is not None else outage.start,
        len(during),
        stale,
        len(late_fresh),
        allowed,
        len(collisions),
    )
