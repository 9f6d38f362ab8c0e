"""NOTES.txt prints a working way to reach the server for the chosen Service type."""

from __future__ import annotations

from chart.render import NAMESPACE, notes


def test_cluster_ip_points_at_the_in_cluster_url_and_helm_test():
    text = notes()
    assert "export URL=http://demo-tf-model-server.models.svc.cluster.local:8501" in text
    assert "helm test demo --namespace models --logs" in text
    assert "port-forward" not in text


def test_node_port_uses_the_fixed_node_port():
    text = notes({"service": {"type": "NodePort", "nodePort": 30851}})
    assert "export NODE_PORT=30851" in text
    assert "NODE_IP=127.0.0.1" in text
    assert "export URL=http://$NODE_IP:$NODE_PORT" in text


def test_node_port_without_a_fixed_port_looks_it_up():
    text = notes({"service": {"type": "NodePort"}})
    assert (
        f'export NODE_PORT=$(kubectl get --namespace {NAMESPACE} -o jsonpath="{{.spec.ports[0].nodePort}}" '
        "services demo-tf-model-server)"
    ) in text


def test_load_balancer_looks_up_the_external_address():
    text = notes({"service": {"type": "LoadBalancer", "port": 80}})
    assert ".status.loadBalancer.ingress[0].ip" in text
    assert "export URL=http://$SERVICE_IP:80" in text


def test_ingress_url_wins_over_the_service_type():
    text = notes(
        {
            "ingress": {
                "enabled": True,
                "hosts": [{"host": "models.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}],
                "tls": [{"secretName": "tls", "hosts": ["models.example.com"]}],
            }
        }
    )
    assert "export URL=https://models.example.com\n" in text


def test_prediction_curl_uses_the_first_served_model():
    text = notes({"server": {"modelName": "fraud,anomaly"}})
    assert "curl -s $URL/v2/models/fraud | jq '.inputs[0].shape[-1]'" in text
    assert "curl -s -X POST $URL/v1/models/fraud:predict" in text


def test_service_monitor_without_the_operator_is_explained():
    assert "no monitoring.coreos.com/v1 API" in notes({"serviceMonitor": {"enabled": True}})
    assert "no monitoring.coreos.com/v1 API" not in notes(
        {"serviceMonitor": {"enabled": True}}, args=["--api-versions", "monitoring.coreos.com/v1"]
    )


def test_fault_injection_warns():
    assert "WARNING: server.faultInjection is on" in notes({"server": {"faultInjection": True}})
    assert "WARNING" not in notes()


def test_the_notes_grpc_target_is_the_services_grpc_port():
    assert "export GRPC_TARGET=demo-tf-model-server.models.svc.cluster.local:8500" in notes()
    node_port = notes({"service": {"type": "NodePort", "grpcNodePort": 30850}})
    assert "export GRPC_TARGET=$NODE_IP:30850" in node_port
    assert "GRPC_TARGET" not in notes({"server": {"grpcPort": 0}})
    load_balancer = notes({"service": {"type": "LoadBalancer", "grpcPort": 443}})
    assert "export GRPC_TARGET=$SERVICE_IP:443" in load_balancer
    looked_up = notes({"service": {"type": "NodePort"}})
    assert """jsonpath='{.spec.ports[?(@.name=="grpc")].nodePort}'""" in looked_up
