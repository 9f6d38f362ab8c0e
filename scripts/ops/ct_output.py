"""What `ct install --debug` did per chart/ci scenario, read from its output.

ct prints no timings and no per-scenario verdict; with `--debug` it echoes every command it
runs (`>>> helm install ...`, `>>> helm test ...`), which marks where each phase starts.
Each line is fed in with the moment it arrived:

    reader = CtOutput(); reader.feed(time.monotonic(), line); ...
    results = reader.results(all_scenarios, ct_succeeded)

Install time runs from `>>> helm install` (which waits for readiness) through ct's own
rollout check to `>>> helm test`, or, when the install failed, to ct's first clean-up
command (how long helm waited); the test time from `>>> helm test` to ct's next command.
ct stops at the first failing scenario, so the scenario running when it failed is the
failed one and any after it never ran.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

SCENARIO_START = re.compile(r'^Installing chart with values file "(?P<path>[^"]+)"')
COMMAND = re.compile(r"^>>> (?P<command>.*)$")
HELM_INSTALL = re.compile(r"^helm install (?P<release>\S+) ")
TEST_PHASE = re.compile(r"^Phase:\s+(?P<phase>\w+)")
UNINSTALLED = re.compile(r'^release "(?P<release>[^"]+)" uninstalled')
# ct's clean-up after every scenario, passed or failed, starts with the namespace's events.
CLEANUP_START = re.compile(r"^kubectl .*\bget events\b")
HELM_ERROR = re.compile(r"^Error: (?P<message>.+)$")
# The chart's own test pod prints "ok: <model> version <v> on <pod>: <predictions>".
TEST_POD_OK = re.compile(r"^ok: (?P<model>\S+) version (?P<version>\S+) on (?P<pod>\S+):")


@dataclass
class Scenario:
    values_file: str
    started: float
    release: str = ""
    install_started: float | None = None
    install_ended: float | None = None
    test_started: float | None = None
    test_ended: float | None = None
    test_phases: list[str] = field(default_factory=list)
    served: str = ""
    errors: list[str] = field(default_factory=list)
    uninstalled: bool = False

    @property
    def install_seconds(self) -> float | None:
        if self.install_started is None or self.install_ended is None:
            return None
        return self.install_ended - self.install_started

    @property
    def test_seconds(self) -> float | None:
        if self.test_started is None or self.test_ended is None:
            return None
        return self.test_ended - self.test_started


@dataclass(frozen=True)
class Result:
    values_file: str
    status: str  # passed | failed in install | failed in helm test | not run
    install_seconds: float | None
    helm_test: str  # the test pod's phase(s), e.g. "Succeeded"; "-" when it never ran
    test_seconds: float | None
    removed: bool
    served: str
    error: str

    @property
    def ok(self) -> bool:
        return self.status == "passed"


class CtOutput:
    def __init__(self) -> None:
        self.scenarios: list[Scenario] = []
        self.last_command = ""

    @property
    def current(self) -> Scenario | None:
        return self.scenarios[-1] if self.scenarios else None

    def feed(self, at: float, line: str) -> None:
        text = line.rstrip("\n")
        started = SCENARIO_START.match(text)
        if started:
            self.scenarios.append(Scenario(values_file=started["path"], started=at))
            return
        scenario = self.current
        if scenario is None:
            return
        command = COMMAND.match(text)
        if command:
            self.on_command(scenario, at, command["command"])
            return
        if self.last_command.startswith("helm test") and (phase := TEST_PHASE.match(text)):
            scenario.test_phases.append(phase["phase"])
        elif served := TEST_POD_OK.match(text):
            scenario.served = f"{served['model']} v{served['version']}"
        elif (removed := UNINSTALLED.match(text)) and removed["release"] == scenario.release:
            scenario.uninstalled = True
        elif self.last_command.startswith(("helm install", "helm test")) and (
            error := HELM_ERROR.match(text)
        ):
            scenario.errors.append(error["message"])

    def on_command(self, scenario: Scenario, at: float, command: str) -> None:
        if self.last_command.startswith("helm test") and scenario.test_ended is None:
            scenario.test_ended = at
        install = HELM_INSTALL.match(command)
        if install:
            scenario.release = install["release"]
            scenario.install_started = at
        elif command.startswith("helm test "):
            scenario.test_started = at
            scenario.install_ended = at
        elif CLEANUP_START.match(command) and scenario.install_ended is None:
            scenario.install_ended = at  # the install (or ct's rollout check) failed
        self.last_command = command

    def results(self, values_files: Sequence[str], ct_succeeded: bool) -> list[Result]:
        """One result per scenario ct should run (values_files, in ct's order)."""
        seen = {scenario.values_file: scenario for scenario in self.scenarios}
        last = self.current.values_file if self.current else None
        return [
            self.result_of(seen[path], failed=not ct_succeeded and path == last)
            if path in seen
            else Result(path, "not run", None, "-", None, False, "", "")
            for path in values_files
        ]

    @staticmethod
    def result_of(scenario: Scenario, failed: bool) -> Result:
        tested = scenario.test_started is not None
        test_passed = tested and scenario.test_phases != [] and set(scenario.test_phases) == {"Succeeded"}
        if failed or (tested and not test_passed):
            status = "failed in helm test" if tested else "failed in install"
        else:
            status = "passed"
        return Result(
            values_file=scenario.values_file,
            status=status,
            install_seconds=scenario.install_seconds,
            helm_test=", ".join(scenario.test_phases) or ("no phase printed" if tested else "-"),
            test_seconds=scenario.test_seconds,
            removed=scenario.uninstalled,
            served=scenario.served,
            error=scenario.errors[-1] if scenario.errors else "",
        )


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def table(results: Sequence[Result]) -> str:
    rows = [("scenario", "result", "install", "helm test", "test time", "served", "uninstalled")]
    for result in results:
        rows.append(
            (
                result.values_file.rsplit("/", 1)[-1],
                result.status,
                seconds(result.install_seconds),
                result.helm_test,
                seconds(result.test_seconds),
                result.served or "-",
                "yes" if result.removed else "no",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
