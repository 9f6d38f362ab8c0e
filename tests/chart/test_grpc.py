"""The gRPC port through the chart: container port, Service port, NetworkPolicy, probe, values.

The server-side settings (TFMS_GRPC_*) reach the ConfigMap through the settings table and
are covered, row by row, by test_server_config.py.
"""

from __future__ import annotations

import pytest

from chart.render import template, template_error

GRPC_OFF = {"server": {"grpcPort": 0}}


def ports_by_name(ports: list[dict]) -> dict[str, dict]:
    return {port["name"]: port for port in ports}


def test_the_server_container_has_a_grpc_port_next_to_http():
    ports = ports_by_name(template().server_container["ports"])
    assert ports["grpc"] == {"name": "grpc", "containerPort": 8500, "protocol": "TCP"}
    assert ports["http"]["containerPort"] == 8501
    moved = ports_by_name(template({"server": {"grpcPort": 9000}}).server_container["ports"])
    assert moved["grpc"]["containerPort"] == 9000
    assert template({"server": {"grpcPort": 9000}}).config["TFMS_GRPC_PORT"] == "9000"


def test_the_service_exposes_grpc_with_its_app_protocol():
    ports = ports_by_name(template().one("Service")["spec"]["ports"])
    assert ports["grpc"] == {
        "name": "grpc",
        "port": 8500,
        "targetPort": "grpc",
        "protocol": "TCP",
        "appProtocol": "grpc",
    }
    custom = ports_by_name(template({"service": {"grpcPort": 443}}).one("Service")["spec"]["ports"])
    assert custom["grpc"]["port"] == 443


def test_a_fixed_grpc_node_port_is_used_only_off_cluster_ip():
    values = {"service": {"type": "NodePort", "grpcNodePort": 30850}}
    ports = ports_by_name(template(values).one("Service")["spec"]["ports"])
    assert ports["grpc"]["nodePort"] == 30850
    assert "nodePort" not in ports["http"]
    cluster_ip = ports_by_name(template({"service": {"grpcNodePort": 30850}}).one("Service")["spec"]["ports"])
    assert "nodePort" not in cluster_ip["grpc"]


def test_grpc_port_zero_renders_no_grpc_anywhere():
    rendered = template({**GRPC_OFF, "networkPolicy": {"enabled": True}})
    assert [port["name"] for port in rendered.server_container["ports"]] == ["http"]
    assert [port["name"] for port in rendered.one("Service")["spec"]["ports"]] == ["http"]
    (rule,) = rendered.one("NetworkPolicy")["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert rendered.config["TFMS_GRPC_PORT"] == "0"


def test_the_network_policy_admits_the_grpc_port():
    for allow_external in (True, False):
        policy = template({"networkPolicy": {"enabled": True, "allowExternal": allow_external}})
        (rule,) = policy.one("NetworkPolicy")["spec"]["ingress"]
        assert {"port": "grpc", "protocol": "TCP"} in rule["ports"]


def test_readiness_is_probed_over_http_by_default():
    probe = template().server_container["readinessProbe"]
    assert probe["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert "grpc" not in probe


def test_the_grpc_readiness_probe_is_the_kubelets_native_grpc_probe():
    probe = template({"grpcReadinessProbe": True}).server_container["readinessProbe"]
    assert probe == {"grpc": {"port": 8500}, "periodSeconds": 1, "timeoutSeconds": 2, "failureThreshold": 2}
    moved = template({"grpcReadinessProbe": True, "server": {"grpcPort": 9000}})
    assert moved.server_container["readinessProbe"]["grpc"] == {"port": 9000}
    # liveness and startup stay on HTTP: they must not depend on the gRPC services.
    assert "httpGet" in moved.server_container["livenessProbe"]


def test_the_grpc_readiness_probe_without_the_grpc_port_fails_with_the_fix():
    error = template_error({"grpcReadinessProbe": True, **GRPC_OFF})
    assert "grpcReadinessProbe needs the gRPC port: set server.grpcPort" in error


def test_a_memory_limit_too_small_for_one_largest_message_fails_with_the_fix():
    server = {"limits": {"maxInflightBytes": 150 * 1024 * 1024}, "grpc": {"maxMessageBytes": 64 << 20}}
    values = {"server": server}
    error = template_error(values)
    assert "must be at least 3x server.grpc.maxMessageBytes (201326592)" in error
    assert template({**values, "server": {**values["server"], "grpcPort": 0}}).config["TFMS_GRPC_PORT"] == "0"


def test_the_grpc_and_http_ports_must_differ():
    assert "server.grpcPort and server.port are both 8501" in template_error({"server": {"grpcPort": 8501}})


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"service": {"grpcPort": "grpc"}}, "service.grpcPort: Invalid type. Expected: integer"),
        ({"service": {"grpcPort": 0}}, "service.grpcPort: Must be greater than or equal to 1"),
        ({"service": {"grpcNodePort": 8500}}, "service.grpcNodePort: Must be greater than or equal to 30000"),
        ({"server": {"grpcPort": 70000}}, "server.grpcPort: Must be less than or equal to 65535"),
        (
            {"server": {"grpc": {"maxMessageBytes": -1}}},
            "server.grpc.maxMessageBytes: Must be greater than or equal to 0",
        ),
        (
            {"server": {"grpc": {"maxConnectionAgeSeconds": -1}}},
            "server.grpc.maxConnectionAgeSeconds: Must be greater than or equal to 0",
        ),
        (
            {"server": {"grpc": {"maxConnectionAge": 60}}},
            "server.grpc: Additional property maxConnectionAge is not allowed",
        ),
        ({"grpcReadinessProbe": "yes"}, "grpcReadinessProbe: Invalid type. Expected: boolean, given: string"),
    ],
    ids=lambda v: str(v) if isinstance(v, dict) else "",
)
def test_bad_grpc_values_are_refused_by_name(values, expected):
    assert expected in template_error(values)
