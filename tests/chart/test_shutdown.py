"""Graceful shutdown: preStop and terminationGracePeriodSeconds derived from the drain settings."""

from __future__ import annotations

import pytest

from chart.render import template, template_error


def grace(values: dict) -> int:
    return template(values).pod_spec["terminationGracePeriodSeconds"]


def test_defaults_give_the_server_its_drain_timeout_plus_margin():
    # exits within TFMS_DRAIN_TIMEOUT_SECONDS (20) of SIGTERM + 5 s margin, no preStop sleep
    assert grace({}) == 25


@pytest.mark.parametrize(
    ("prestop", "delay", "timeout", "margin", "expected"),
    [(0, 5, 20, 5, 25), (3, 5, 20, 5, 28), (0, 10, 60, 5, 65), (10, 0, 1, 0, 11), (2, 5, 30, 10, 42)],
)
def test_grace_period_is_prestop_plus_drain_timeout_plus_margin(prestop, delay, timeout, margin, expected):
    values = {
        "termination": {"preStopSleepSeconds": prestop, "marginSeconds": margin},
        "server": {"drain": {"delaySeconds": delay, "timeoutSeconds": timeout}},
    }
    assert grace(values) == expected


def test_no_prestop_hook_by_default_because_the_server_drains_itself():
    assert "lifecycle" not in template().server_container


def test_prestop_uses_the_kubelets_native_sleep():
    server = template({"termination": {"preStopSleepSeconds": 4}}).server_container
    assert server["lifecycle"] == {"preStop": {"sleep": {"seconds": 4}}}


def test_drain_delay_must_be_shorter_than_the_timeout():
    message = template_error({"server": {"drain": {"delaySeconds": 20, "timeoutSeconds": 20}}})
    assert "server.drain.delaySeconds (20) must be less than server.drain.timeoutSeconds (20)" in message


def test_prestop_sleep_is_refused_before_kubernetes_1_30():
    values = {"termination": {"preStopSleepSeconds": 3}}
    message = template_error(values, args=["--kube-version", "1.29.4"])
    assert "termination.preStopSleepSeconds needs Kubernetes 1.30+" in message
    assert template(values, args=["--kube-version", "1.30.0"]).server_container["lifecycle"]


def test_without_prestop_sleep_older_clusters_are_fine():
    assert template(args=["--kube-version", "1.25.0"]).has("Deployment")
