"""Reading `ct install --debug` output into per-scenario results (ops.ct_output), and ct's command line."""

from __future__ import annotations

from ops import chart_testing
from ops.ct_output import CtOutput, table

SCENARIOS = ["chart/ci/a-values.yaml", "chart/ci/b-values.yaml", "chart/ci/c-values.yaml"]


def passing(values: str, release: str, start: float) -> list[tuple[float, str]]:
    """One scenario as ct v3.12.0 prints it (trimmed), with arrival times from start."""
    return [
        (start, f'Installing chart with values file "{values}"...'),
        (
            start + 0.1,
            f">>> helm install {release} chart --namespace ct --wait --values {values} --timeout 600s",
        ),
        (start + 4.0, f"NAME: {release}"),
        (start + 4.0, "STATUS: deployed"),
        (
            start + 4.1,
            f">>> kubectl --request-timeout=30s rollout status deployment {release}-x --namespace ct",
        ),
        (start + 4.6, f">>> helm test {release} --namespace ct --timeout 600s"),
        (start + 7.0, f"TEST SUITE:     {release}-x-test-predict"),
        (start + 7.0, "Phase:          Succeeded"),
        (start + 7.2, ">>> kubectl --request-timeout=30s get events --output wide --namespace ct"),
        (
            start + 7.3,
            "3s  Warning  Unhealthy  pod/x  Readiness probe failed: HTTP probe failed with statuscode: 503",
        ),
        (start + 7.4, "Error: this is a server log line, not a helm error"),
        (start + 7.5, f">>> kubectl --request-timeout=30s logs {release}-x-test-predict --namespace ct"),
        (start + 7.6, f"ok: anomaly version 2 on {release}-x-abc: [{{'anomaly_score': 1.0}}]"),
        (start + 7.7, f'Deleting release "{release}"...'),
        (start + 7.7, f">>> helm uninstall {release} --namespace ct --timeout 600s"),
        (start + 7.8, f'release "{release}" uninstalled'),
    ]


def read(lines: list[tuple[float, str]]) -> CtOutput:
    reader = CtOutput()
    for at, line in [(0.0, "Installing charts..."), (0.0, ">>> helm version"), *lines]:
        reader.feed(at, line + "\n")
    return reader


def test_every_scenario_passes_with_its_times():
    lines = [
        *passing(SCENARIOS[0], "r1", 10),
        *passing(SCENARIOS[1], "r2", 20),
        *passing(SCENARIOS[2], "r3", 30),
    ]
    results = read(lines).results(SCENARIOS, ct_succeeded=True)
    assert [result.status for result in results] == ["passed"] * 3
    first = results[0]
    assert round(first.install_seconds, 1) == 4.5
    assert round(first.test_seconds, 1) == 2.6
    assert first.helm_test == "Succeeded"
    assert first.served == "anomaly v2"
    assert first.removed
    assert first.error == ""  # the log line saying "Error:" was not helm's


def test_install_that_never_gets_ready_fails_that_scenario_and_later_ones_never_run():
    broken = [
        (20.0, f'Installing chart with values file "{SCENARIOS[1]}"...'),
        (20.1, f">>> helm install r2 chart --namespace ct --wait --values {SCENARIOS[1]} --timeout 90s"),
        (110.1, "Error: INSTALLATION FAILED: context deadline exceeded"),
        (110.2, ">>> kubectl --request-timeout=30s get events --output wide --namespace ct"),
        (110.5, ">>> helm uninstall r2 --namespace ct --timeout 90s"),
        (110.6, 'release "r2" uninstalled'),
        (110.7, "Error: failed installing charts: failed processing charts"),
    ]
    results = read([*passing(SCENARIOS[0], "r1", 10), *broken]).results(SCENARIOS, ct_succeeded=False)
    assert [result.status for result in results] == ["passed", "failed in install", "not run"]
    assert results[1].error == "INSTALLATION FAILED: context deadline exceeded"
    assert round(results[1].install_seconds, 1) == 90.1  # how long helm waited
    assert results[1].helm_test == "-"
    assert results[1].removed
    assert results[2].removed is False


def test_failed_test_pod_fails_the_scenario_in_helm_test():
    lines = [
        (line[0], line[1].replace("Succeeded", "Failed")) if line[1].startswith("Phase:") else line
        for line in passing(SCENARIOS[0], "r1", 10)
    ]
    lines.insert(8, (17.1, "Error: 1 error occurred:"))
    (result,) = read(lines).results(SCENARIOS[:1], ct_succeeded=False)
    assert result.status == "failed in helm test"
    assert result.helm_test == "Failed"
    assert result.error == "1 error occurred:"


def test_test_phase_missing_is_not_a_pass():
    lines = [line for line in passing(SCENARIOS[0], "r1", 10) if not line[1].startswith("Phase:")]
    (result,) = read(lines).results(SCENARIOS[:1], ct_succeeded=True)
    assert result.status == "failed in helm test"
    assert result.helm_test == "no phase printed"


def test_table_has_a_row_per_scenario():
    results = read(passing(SCENARIOS[0], "r1", 10)).results(SCENARIOS[:2], ct_succeeded=True)
    rendered = table(results).splitlines()
    assert rendered[0].split() == [
        "scenario",
        "result",
        "install",
        "helm",
        "test",
        "test",
        "time",
        "served",
        "uninstalled",
    ]
    assert rendered[2].split() == [
        "a-values.yaml",
        "passed",
        "4.5s",
        "Succeeded",
        "2.6s",
        "anomaly",
        "v2",
        "yes",
    ]
    assert rendered[3].split() == ["b-values.yaml", "not", "run", "-", "-", "-", "-", "no"]


def test_ct_installs_the_chart_by_name_so_no_git_history_is_needed():
    command = chart_testing.ct_command(helm_timeout=None, keep=False)
    assert command[1:] == ["install", "--config", "ct.yaml", "--charts", "chart", "--debug"]
    shorter = chart_testing.ct_command(helm_timeout="90s", keep=True)
    assert shorter[-3:] == ["--helm-extra-args", "--timeout 90s", "--skip-clean-up"]
