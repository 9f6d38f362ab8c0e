"""The Deployment's defaults: probes, rollout, replicas, labels, resources, scheduling."""

from __future__ import annotations

import pytest

from chart.render import (
    RELEASE,
    RENDER_ONLY_VALUES,
    pod_specs,
    template,
    template_error,
    template_with_live_deployment,
)

SELECTOR = {"app.kubernetes.io/name": "tf-model-server", "app.kubernetes.io/instance": RELEASE}


def test_probes_hit_the_servers_health_endpoints_on_the_http_port():
    server = template().server_container
    assert server["startupProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert server["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert server["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    # Room for TensorFlow's import and model load before liveness takes over.
    startup = server["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60


def test_readiness_drops_a_restarting_container_well_inside_the_drain_delay():
    # A liveness restart does not delete the pod: only failed readiness takes it out of
    # the Service, and the server keeps answering for the drain delay meanwhile.
    rendered = template()
    readiness = rendered.server_container["readinessProbe"]
    detection_seconds = readiness["periodSeconds"] * readiness["failureThreshold"]
    kube_proxy_sync_seconds = 1
    drain_delay_seconds = float(rendered.config["TFMS_DRAIN_DELAY_SECONDS"])
    assert detection_seconds + kube_proxy_sync_seconds <= drain_delay_seconds - 2


def test_probes_are_tunable():
    server = template(
        {"readinessProbe": {"periodSeconds": 7}, "livenessProbe": {"failureThreshold": 9}}
    ).server_container
    assert server["readinessProbe"]["periodSeconds"] == 7
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert server["livenessProbe"]["failureThreshold"] == 9


def test_container_port_is_named_http_and_follows_server_port():
    assert template().server_container["ports"] == [
        {"name": "http", "containerPort": 8501, "protocol": "TCP"},
        {"name": "grpc", "containerPort": 8500, "protocol": "TCP"},
    ]
    rendered = template({"server": {"port": 9000}})
    assert rendered.server_container["ports"][0]["containerPort"] == 9000
    assert rendered.config["TFMS_PORT"] == "9000"


def test_rolling_update_never_drops_below_the_desired_count():
    strategy = template().deployment["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


def test_rolling_update_is_overridable():
    strategy = template({"rollingUpdate": {"maxSurge": "50%", "maxUnavailable": 1}}).deployment["spec"][
        "strategy"
    ]
    assert strategy["rollingUpdate"] == {"maxSurge": "50%", "maxUnavailable": 1}


def test_replicas_follow_replica_count_without_hpa():
    assert template({"replicaCount": 3}).deployment["spec"]["replicas"] == 3


def test_replicas_omitted_when_the_hpa_owns_them():
    spec = template({"replicaCount": 3, "autoscaling": {"enabled": True}}).deployment["spec"]
    assert "replicas" not in spec


def test_selector_is_exactly_name_and_instance_everywhere():
    # ...plus, on the Deployment, its constant track (stable; the canary's is canary), so the
    # HPA counts its own pods only; the Service and the PDB select both tracks.
    rendered = template({"autoscaling": {"enabled": True}, "podLabels": {"team": "ml"}})
    assert rendered.deployment["spec"]["selector"] == {"matchLabels": {**SELECTOR, "track": "stable"}}
    assert rendered.one("Service")["spec"]["selector"] == SELECTOR
    assert rendered.one("PodDisruptionBudget")["spec"]["selector"] == {"matchLabels": SELECTOR}
    pod_labels = rendered.deployment["spec"]["template"]["metadata"]["labels"]
    assert SELECTOR.items() <= pod_labels.items()
    assert pod_labels["team"] == "ml"
    assert pod_labels["app.kubernetes.io/version"] == "0.1.0"


def test_selector_ignores_the_image_tag_so_upgrades_keep_it():
    before = template().deployment["spec"]["selector"]
    after = template({"image": {"tag": "v2"}}).deployment["spec"]["selector"]
    assert before == after == {"matchLabels": {**SELECTOR, "track": "stable"}}


def test_image_defaults_to_app_version_and_tag_overrides():
    assert template().server_container["image"] == "tf-model-server:0.1.0"
    assert template().server_container["imagePullPolicy"] == "IfNotPresent"
    server = template({"image": {"repository": "registry.example/tfms", "tag": "v2"}}).server_container
    assert server["image"] == "registry.example/tfms:v2"


def test_resource_requests_set_by_default_and_memory_limited():
    resources = template().server_container["resources"]
    assert resources["requests"]["cpu"] == "100m"
    assert resources["requests"]["memory"] == "512Mi"
    assert resources["limits"]["memory"] == "1Gi"
    assert "cpu" not in resources["limits"], "a CPU limit throttles TensorFlow; requests drive the HPA"


def test_topology_spread_defaults_to_soft_hostname_spread_on_the_selector():
    constraints = template().pod_spec["topologySpreadConstraints"]
    assert constraints == [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": SELECTOR},
            # each ReplicaSet spread on its own: a rollout spreads the new pods too
            "matchLabelKeys": ["pod-template-hash"],
        }
    ]


def test_topology_spread_keeps_a_given_label_selector():
    given = {
        "maxSkew": 2,
        "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"tier": "gpu"}},
    }
    assert template({"topologySpreadConstraints": [given]}).pod_spec["topologySpreadConstraints"] == [given]


def test_topology_spread_can_be_switched_off():
    assert "topologySpreadConstraints" not in template({"topologySpreadConstraints": []}).pod_spec


def test_gpu_values_request_a_gpu_on_gpu_nodes():
    (gpu_values,) = [path for path in RENDER_ONLY_VALUES if path.name == "gpu-values.yaml"]
    rendered = template(files=[gpu_values])
    assert rendered.server_container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert rendered.pod_spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert rendered.pod_spec["tolerations"][0] == {
        "key": "nvidia.com/gpu",
        "operator": "Exists",
        "effect": "NoSchedule",
    }


NODE_FAILURE_KEYS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")


def test_pods_tolerate_a_failed_node_for_30s_by_default_not_kubernetes_300s():
    tolerations = template().pod_spec["tolerations"]
    assert tolerations == [
        {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}
        for key in NODE_FAILURE_KEYS
    ]


def test_node_failure_toleration_null_leaves_kubernetes_default():
    assert "tolerations" not in template({"nodeFailureTolerationSeconds": None}).pod_spec


def test_a_users_node_failure_toleration_wins():
    own = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}
    tolerations = template({"tolerations": [own], "nodeFailureTolerationSeconds": 10}).pod_spec["tolerations"]
    assert tolerations == [
        own,
        {"key": NODE_FAILURE_KEYS[0], "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10},
    ]


def test_scheduling_values_pass_through():
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}
    pod = template({"nodeSelector": {"pool": "cpu"}, "affinity": affinity}).pod_spec
    assert pod["nodeSelector"] == {"pool": "cpu"}
    assert pod["affinity"] == affinity


def test_pod_annotations_and_image_pull_secrets_pass_through():
    rendered = template({"podAnnotations": {"a": "b"}, "imagePullSecrets": [{"name": "regcred"}]})
    assert rendered.deployment["spec"]["template"]["metadata"]["annotations"]["a"] == "b"
    assert rendered.pod_spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert rendered.test_pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]


def test_service_account_created_and_used():
    rendered = template()
    assert rendered.one("ServiceAccount")["metadata"]["name"] == "demo-tf-model-server"
    assert rendered.pod_spec["serviceAccountName"] == "demo-tf-model-server"


def test_existing_service_account_is_used_without_creating_one():
    rendered = template({"serviceAccount": {"create": False, "name": "models-reader"}})
    assert not rendered.has("ServiceAccount")
    assert rendered.pod_spec["serviceAccountName"] == "models-reader"
    assert template({"serviceAccount": {"create": False}}).pod_spec["serviceAccountName"] == "default"


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        ({}, {"type": "ClusterIP", "port": 8501, "nodePort": None}),
        ({"type": "NodePort", "nodePort": 30851}, {"type": "NodePort", "port": 8501, "nodePort": 30851}),
        ({"type": "NodePort"}, {"type": "NodePort", "port": 8501, "nodePort": None}),
        ({"type": "LoadBalancer", "port": 80}, {"type": "LoadBalancer", "port": 80, "nodePort": None}),
        ({"type": "ClusterIP", "nodePort": 30851}, {"type": "ClusterIP", "port": 8501, "nodePort": None}),
    ],
    ids=["default", "nodeport-fixed", "nodeport-any", "loadbalancer", "clusterip-ignores-nodeport"],
)
def test_service_type_port_and_node_port(service, expected):
    spec = template({"service": service}).one("Service")["spec"]
    port, grpc = spec["ports"]  # the grpc port: tests/chart/test_grpc.py
    assert grpc["name"] == "grpc"
    assert spec["type"] == expected["type"]
    assert port["name"] == "http"
    assert port["targetPort"] == "http"
    assert port["port"] == expected["port"]
    assert port.get("nodePort") == expected["nodePort"]


def test_priority_and_runtime_class_only_when_set():
    assert not {"priorityClassName", "runtimeClassName"} & template().pod_spec.keys()
    pod = template({"priorityClassName": "serving-critical", "runtimeClassName": "nvidia"}).pod_spec
    assert (pod["priorityClassName"], pod["runtimeClassName"]) == ("serving-critical", "nvidia")


# --- ephemeral storage


def test_ephemeral_storage_is_requested_limited_and_covers_tmp():
    rendered = template()
    resources = rendered.server_container["resources"]
    assert resources["requests"]["ephemeral-storage"] == "128Mi"
    assert resources["limits"]["ephemeral-storage"] == "512Mi"
    assert volumes(rendered.pod_spec)["tmp"] == {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}


def test_every_emptydir_has_a_size_limit_and_every_container_an_ephemeral_storage_limit():
    url = {"model": {"source": "url", "url": {"address": "http://models/m.tar.gz"}}}
    rendered = template(url)
    for name, spec in pod_specs(rendered).items():
        for volume in spec.get("volumes", []):
            if "emptyDir" in volume:
                assert volume["emptyDir"].get("sizeLimit"), (
                    f"{name}: emptyDir {volume['name']} has no sizeLimit"
                )
        for box in spec["containers"]:
            assert box["resources"]["limits"].get("ephemeral-storage"), f"{name}/{box['name']}"


def test_ephemeral_storage_limit_below_the_tmp_volume_is_refused():
    message = template_error({"resources": {"limits": {"ephemeral-storage": "200Mi"}}})
    assert (
        "resources.limits.ephemeral-storage (200Mi) is less than tmpDir.sizeLimit (256Mi): the kubelet would "
        "evict the pod before /tmp is full"
    ) in message
    assert template({"resources": {"limits": {"ephemeral-storage": "1G"}}, "tmpDir": {"sizeLimit": "1G"}})


def test_a_quantity_that_is_not_bytes_is_refused_by_name():
    message = template_error({"resources": {"limits": {"ephemeral-storage": "lots"}}})
    assert 'resources.limits.ephemeral-storage: "lots" is not a byte quantity' in message
    assert "tmpDir.sizeLimit: Does not match pattern" in template_error({"tmpDir": {"sizeLimit": "500m"}})


def test_resources_without_ephemeral_storage_stay_without():
    given = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    values = {"resources": {"requests": {"ephemeral-storage": None}, "limits": {"ephemeral-storage": None}}}
    values["resources"]["requests"] |= given["requests"]
    values["resources"]["limits"] |= given["limits"]
    assert template(values).server_container["resources"] == given


# --- replicas and the HPA


def test_hpa_on_a_fresh_install_leaves_replicas_to_the_hpa():
    assert "replicas" not in template({"autoscaling": {"enabled": True}}).deployment["spec"]


@pytest.mark.parametrize(
    ("live", "bounds", "expected"),
    [(3, (1, 5), 3), (7, (1, 5), 5), (1, (2, 5), 2), (4, (4, 4), 4)],
    ids=["kept", "above-max", "below-min", "pinned"],
)
def test_hpa_on_a_running_release_renders_the_live_replica_count(live, bounds, expected):
    """helm's three-way merge deletes a `replicas` the new manifest omits (the API server then
    defaults it to 1): the chart renders what runs, within the HPA's bounds, instead."""
    low, high = bounds
    values = {"replicaCount": 9, "autoscaling": {"enabled": True, "minReplicas": low, "maxReplicas": high}}
    assert template_with_live_deployment(values, live).deployment["spec"]["replicas"] == expected


def test_hpa_off_renders_replica_count_whatever_runs():
    assert template_with_live_deployment({"replicaCount": 2}, 5).deployment["spec"]["replicas"] == 2


def volumes(pod_spec: dict) -> dict[str, dict]:
    return {volume["name"]: volume for volume in pod_spec.get("volumes", [])}
