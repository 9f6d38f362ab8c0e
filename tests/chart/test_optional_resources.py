"""HPA, PDB, Ingress, NetworkPolicy and ServiceMonitor: rendered exactly when they should be."""

from __future__ import annotations

import pytest

from chart.render import RELEASE, template, template_error

SELECTOR = {"app.kubernetes.io/name": "tf-model-server", "app.kubernetes.io/instance": RELEASE}
MONITORING_API = ["--api-versions", "monitoring.coreos.com/v1"]


def test_defaults_render_only_the_core_objects():
    assert template().kinds() == ["ConfigMap", "Deployment", "Pod", "Service", "ServiceAccount"]


# --- HorizontalPodAutoscaler


def test_hpa_off_by_default():
    assert not template().has("HorizontalPodAutoscaler")


def test_hpa_targets_the_deployment_with_cpu_and_memory():
    hpa = template(
        {
            "autoscaling": {
                "enabled": True,
                "minReplicas": 2,
                "maxReplicas": 6,
                "targetMemoryUtilizationPercentage": 80,
            }
        }
    ).one("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "demo-tf-model-server",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    targets = {m["resource"]["name"]: m["resource"]["target"] for m in hpa["spec"]["metrics"]}
    assert targets == {
        "cpu": {"type": "Utilization", "averageUtilization": 70},
        "memory": {"type": "Utilization", "averageUtilization": 80},
    }
    assert "behavior" not in hpa["spec"]


def test_hpa_extra_metrics_are_appended():
    extra = {
        "type": "Pods",
        "pods": {
            "metric": {"name": "tfms_batch_queue_depth"},
            "target": {"type": "AverageValue", "averageValue": "10"},
        },
    }
    hpa = template({"autoscaling": {"enabled": True, "metrics": [extra]}}).one("HorizontalPodAutoscaler")
    assert hpa["spec"]["metrics"][-1] == extra
    assert len(hpa["spec"]["metrics"]) == 2


def test_hpa_behavior_passes_through():
    behavior = {
        "scaleDown": {
            "stabilizationWindowSeconds": 30,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 20}],
        },
        "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max"},
    }
    hpa = template({"autoscaling": {"enabled": True, "behavior": behavior}}).one("HorizontalPodAutoscaler")
    assert hpa["spec"]["behavior"] == behavior


def test_hpa_without_any_metric_is_refused():
    message = template_error({"autoscaling": {"enabled": True, "targetCPUUtilizationPercentage": None}})
    assert "autoscaling.enabled needs a metric" in message


def test_hpa_min_above_max_is_refused():
    message = template_error({"autoscaling": {"enabled": True, "minReplicas": 4, "maxReplicas": 2}})
    assert "autoscaling.minReplicas (4) is greater than autoscaling.maxReplicas (2)" in message


# --- PodDisruptionBudget


@pytest.mark.parametrize(
    ("values", "rendered"),
    [
        ({}, False),
        ({"replicaCount": 2}, True),
        ({"replicaCount": 2, "podDisruptionBudget": {"enabled": False}}, False),
        ({"autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 3}}, True),
        ({"autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 1}}, False),
        ({"replicaCount": 3, "autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 1}}, False),
        ({"replicaCount": 1, "autoscaling": {"enabled": True, "maxReplicas": 2}}, True),
        (
            {
                "replicaCount": 2,
                "autoscaling": {"enabled": True, "maxReplicas": 4},
                "podDisruptionBudget": {"enabled": False},
            },
            False,
        ),
    ],
    ids=[
        "one-replica",
        "two-replicas",
        "two-replicas-disabled",
        "hpa-up-to-3",
        "hpa-pinned-to-1",
        "hpa-pinned-to-1-ignores-replicaCount",
        "hpa-up-to-2",
        "hpa-disabled",
    ],
)
def test_pdb_only_when_more_than_one_replica_can_exist(values, rendered):
    assert template(values).has("PodDisruptionBudget") is rendered


def test_pdb_defaults_to_max_unavailable_one():
    spec = template({"replicaCount": 3}).one("PodDisruptionBudget")["spec"]
    assert spec == {
        "selector": {"matchLabels": SELECTOR},
        "maxUnavailable": 1,
        # a pod that is not Ready serves nothing: evicting it never costs availability
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }


def test_pdb_min_available_replaces_max_unavailable():
    spec = template({"replicaCount": 3, "podDisruptionBudget": {"minAvailable": "50%"}}).one(
        "PodDisruptionBudget"
    )["spec"]
    assert spec == {
        "selector": {"matchLabels": SELECTOR},
        "minAvailable": "50%",
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }


@pytest.mark.parametrize(
    ("policy", "args", "rendered"),
    [
        ("IfHealthyBudget", [], "IfHealthyBudget"),
        ("", [], None),
        ("AlwaysAllow", ["--kube-version", "1.26.0"], None),
    ],
    ids=["if-healthy-budget", "empty-renders-nothing", "before-kubernetes-1.27"],
)
def test_pdb_unhealthy_pod_eviction_policy(policy, args, rendered):
    values = {"replicaCount": 3, "podDisruptionBudget": {"unhealthyPodEvictionPolicy": policy}}
    spec = template(values, args=args).one("PodDisruptionBudget")["spec"]
    assert spec.get("unhealthyPodEvictionPolicy") == rendered


def test_pdb_unhealthy_pod_eviction_policy_is_an_enum():
    message = template_error({"podDisruptionBudget": {"unhealthyPodEvictionPolicy": "Always"}})
    assert "podDisruptionBudget.unhealthyPodEvictionPolicy must be one of the following" in message


# --- Ingress


def test_ingress_off_by_default():
    assert not template().has("Ingress")


def test_ingress_routes_hosts_to_the_http_port_with_class_and_tls():
    ingress = template(
        {
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "8m"},
                "hosts": [{"host": "models.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}],
                "tls": [{"secretName": "models-tls", "hosts": ["models.example.com"]}],
            }
        }
    ).one("Ingress")
    assert ingress["apiVersion"] == "networking.k8s.io/v1"
    assert ingress["metadata"]["annotations"] == {"nginx.ingress.kubernetes.io/proxy-body-size": "8m"}
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"hosts": ["models.example.com"], "secretName": "models-tls"}]
    (rule,) = spec["rules"]
    assert rule["host"] == "models.example.com"
    (path,) = rule["http"]["paths"]
    assert path == {
        "path": "/",
        "pathType": "Prefix",
        "backend": {"service": {"name": "demo-tf-model-server", "port": {"name": "http"}}},
    }


def test_ingress_without_class_name_uses_the_cluster_default():
    assert "ingressClassName" not in template({"ingress": {"enabled": True}}).one("Ingress")["spec"]


# --- NetworkPolicy


def test_network_policy_off_by_default():
    assert not template().has("NetworkPolicy")


def test_network_policy_open_ingress_to_http_and_dns_egress():
    policy = template({"networkPolicy": {"enabled": True}}).one("NetworkPolicy")["spec"]
    assert policy["podSelector"] == {"matchLabels": SELECTOR}
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"] == [
        {"ports": [{"port": "http", "protocol": "TCP"}, {"port": "grpc", "protocol": "TCP"}]}
    ]
    assert policy["egress"] == [{"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]


def test_network_policy_restricted_admits_the_helm_test_pod_and_listed_peers():
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway"}}}
    rendered = template({"networkPolicy": {"enabled": True, "allowExternal": False, "ingressFrom": [peer]}})
    (rule,) = rendered.one("NetworkPolicy")["spec"]["ingress"]
    test_peer, listed = rule["from"]
    assert listed == peer
    test_pod_labels = rendered.test_pod["metadata"]["labels"]
    assert test_peer["podSelector"]["matchLabels"].items() <= test_pod_labels.items()


def test_network_policy_admits_prometheus_when_monitoring_is_on():
    values = {"networkPolicy": {"enabled": True, "allowExternal": False}, "serviceMonitor": {"enabled": True}}
    (rule,) = template(values).one("NetworkPolicy")["spec"]["ingress"]
    assert {"port": "http", "protocol": "TCP"} in rule["ports"]  # /metrics is on the http port
    assert rule["from"][1:] == [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
    ]
    custom = {"podSelector": {"matchLabels": {"app": "vmagent"}}}
    values["networkPolicy"]["metricsScrapers"] = [custom]
    (rule,) = template(values).one("NetworkPolicy")["spec"]["ingress"]
    assert rule["from"][1:] == [custom]


def test_network_policy_admits_no_scraper_without_monitoring():
    (rule,) = template({"networkPolicy": {"enabled": True, "allowExternal": False}}).one("NetworkPolicy")[
        "spec"
    ]["ingress"]
    assert len(rule["from"]) == 1  # the helm test pod only


def test_network_policy_extra_egress_is_appended():
    egress = {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 443, "protocol": "TCP"}]}
    policy = template({"networkPolicy": {"enabled": True, "egress": [egress]}}).one("NetworkPolicy")["spec"]
    assert policy["egress"][1:] == [egress]


def test_helm_test_pod_is_not_selected_as_a_server_pod():
    labels = template().test_pod["metadata"]["labels"]
    assert not SELECTOR.items() <= labels.items()


# --- ServiceMonitor


def test_service_monitor_renders_when_enabled_without_asking_the_cluster():
    # `helm template` and GitOps tools see no cluster API: enabled means rendered.
    assert template({"serviceMonitor": {"enabled": True}}).has("ServiceMonitor")


def test_service_monitor_can_wait_for_the_prometheus_operator_api():
    values = {"serviceMonitor": {"enabled": True, "onlyIfAPIAvailable": True}}
    assert not template(values).has("ServiceMonitor")
    assert template(values, args=MONITORING_API).has("ServiceMonitor")


def test_service_monitor_off_by_default_even_with_the_api():
    assert not template(args=MONITORING_API).has("ServiceMonitor")


def test_service_monitor_scrapes_metrics_on_the_http_port():
    monitor = template(
        {"serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prometheus"}}},
    ).one("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["metadata"]["namespace"] == "models"
    assert monitor["spec"]["selector"] == {"matchLabels": SELECTOR}
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["models"]}
    assert monitor["spec"]["endpoints"] == [
        {
            "port": "http",
            "path": "/metrics",
            "interval": "15s",
            "scrapeTimeout": "10s",
            "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}],
        }
    ]


def test_service_monitor_relabelings_and_namespace_are_values():
    drop = {"sourceLabels": ["__name__"], "regex": "python_gc_.*", "action": "drop"}
    monitor = template(
        {
            "serviceMonitor": {
                "enabled": True,
                "namespace": "monitoring",
                "relabelings": [],
                "metricRelabelings": [drop],
            }
        }
    ).one("ServiceMonitor")
    assert monitor["metadata"]["namespace"] == "monitoring"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["models"]}  # still scrapes the release's
    (endpoint,) = monitor["spec"]["endpoints"]
    assert "relabelings" not in endpoint and endpoint["metricRelabelings"] == [drop]
