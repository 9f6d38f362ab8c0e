"""model.source: baked into the image, an existing PVC, or fetched from a URL by an init container."""

from __future__ import annotations

import pytest

from chart.render import container, template, template_error


def mounts(spec_container: dict) -> dict[str, dict]:
    return {m["mountPath"]: m for m in spec_container.get("volumeMounts", [])}


def volumes(pod_spec: dict) -> dict[str, dict]:
    return {v["name"]: v for v in pod_spec["volumes"]}


def test_image_source_mounts_nothing_over_the_baked_models():
    rendered = template()
    assert "initContainers" not in rendered.pod_spec
    assert "/models" not in mounts(rendered.server_container)
    assert set(volumes(rendered.pod_spec)) == {"tmp"}


def test_pvc_source_mounts_the_claim_read_only_at_the_model_base_path():
    rendered = template({"model": {"source": "pvc", "pvc": {"claimName": "trained", "subPath": "exports"}}})
    assert volumes(rendered.pod_spec)["models"]["persistentVolumeClaim"] == {
        "claimName": "trained",
        "readOnly": True,
    }
    mount = mounts(rendered.server_container)["/models"]
    assert mount == {"name": "models", "mountPath": "/models", "readOnly": True, "subPath": "exports"}
    assert "initContainers" not in rendered.pod_spec


def test_pvc_mount_follows_the_model_base_path():
    rendered = template(
        {"model": {"source": "pvc", "pvc": {"claimName": "trained"}}, "server": {"modelBasePath": "/srv"}}
    )
    assert "subPath" not in mounts(rendered.server_container)["/srv"]
    assert rendered.config["TFMS_MODEL_BASE_PATH"] == "/srv"


def test_pvc_source_without_a_claim_is_refused():
    message = template_error({"model": {"source": "pvc"}})
    assert "model.source is pvc: set model.pvc.claimName" in message


def test_url_source_fetches_into_an_emptydir_with_the_server_image():
    url = "https://models.example/anomaly.tar.gz"
    rendered = template({"model": {"source": "url", "url": {"address": url, "sizeLimit": "3Gi"}}})
    fetch = container(rendered.pod_spec, "fetch-model")
    assert rendered.pod_spec["initContainers"] == [fetch]
    assert fetch["image"] == rendered.server_container["image"]
    three_gib = 3 * 1024**3
    assert fetch["command"] == [
        *("python", "-m", "modelserver.fetch", "--url", url, "--dest", "/models"),
        # bounded by the emptyDir it fills (the 8 GiB default would overflow it)
        *("--max-download-bytes", str(three_gib), "--max-unpacked-bytes", str(three_gib * 95 // 100)),
    ]
    assert volumes(rendered.pod_spec)["models"] == {"name": "models", "emptyDir": {"sizeLimit": "3Gi"}}
    assert mounts(fetch)["/models"]["name"] == "models"
    assert mounts(fetch)["/tmp"]["name"] == "tmp"
    assert mounts(rendered.server_container)["/models"] == {
        "name": "models",
        "mountPath": "/models",
        "readOnly": True,
    }


def test_url_source_without_an_address_is_refused():
    message = template_error({"model": {"source": "url"}})
    assert "model.source is url: set model.url.address" in message


def test_extra_volumes_and_mounts_are_added():
    rendered = template(
        {
            "volumes": [{"name": "cache", "emptyDir": {}}],
            "volumeMounts": [{"name": "cache", "mountPath": "/var/cache/tfms"}],
        }
    )
    assert "cache" in volumes(rendered.pod_spec)
    assert mounts(rendered.server_container)["/var/cache/tfms"]["name"] == "cache"


@pytest.mark.parametrize(
    ("size", "unpacked"),
    [("2Gi", 2040109465), ("1.5Gi", 1530082099), ("500M", 475000000), ("1073741824", 1020054732)],
)
def test_the_fetch_bound_follows_the_size_limit(size, unpacked):
    rendered = template({"model": {"source": "url", "url": {"address": "http://m/x.tgz", "sizeLimit": size}}})
    command = container(rendered.pod_spec, "fetch-model")["command"]
    assert command[command.index("--max-unpacked-bytes") + 1] == str(unpacked)


def test_url_models_count_toward_the_servers_ephemeral_storage():
    rendered = template(
        {"model": {"source": "url", "url": {"address": "http://m/x.tgz", "sizeLimit": "2Gi"}}}
    )
    storage = {kind: v["ephemeral-storage"] for kind, v in rendered.server_container["resources"].items()}
    assert storage == {"requests": "2176Mi", "limits": "2560Mi"}  # 128Mi + 2Gi, 512Mi + 2Gi
    assert template().server_container["resources"]["limits"]["ephemeral-storage"] == "512Mi"


def test_a_model_size_limit_that_is_not_bytes_is_refused():
    message = template_error(
        {"model": {"source": "url", "url": {"address": "http://m/x", "sizeLimit": "big"}}}
    )
    assert "model.url.sizeLimit: Does not match pattern" in message
