"""Write container images as OCI archives (plus Docker's manifest.json) without a daemon or a registry.

The local cluster's component images are a static binary on an empty root (or on a
small Debian root for kube-proxy). Writing the OCI layout directly needs neither
Docker nor a base-image pull; `ctr images import` reads the result, and the
`io.containerd.image.name` annotation gives it the exact name kubeadm expects.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CHUNK = 1 << 20


@dataclass(frozen=True)
class ImageSpec:
    """What goes into one image: its full name, layers (uncompressed tars) and runtime config."""

    name: str  # e.g. registry.k8s.io/kube-apiserver:v1.32.9
    layers: Sequence[Path]
    entrypoint: Sequence[str] = ()
    env: Sequence[str] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    user: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def files_layer(dest: Path, files: Mapping[str, Path], directories: Sequence[str] = ()) -> Path:
    """An uncompressed layer tar holding host files at the given in-image paths (mode kept).

    Parent directories are created 0755; `directories` adds empty ones (e.g. "tmp").
    Timestamps are zeroed so the same inputs give the same digest.
    """
    wanted_dirs: set[str] = set(directories)
    for target in files:
        parts = Path(target.lstrip("/")).parts[:-1]
        wanted_dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for directory in sorted(wanted_dirs):
            info = tarfile.TarInfo(directory.strip("/"))
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if directory.strip("/") == "tmp" else 0o755
            tar.addfile(info)
        for target, source in sorted(files.items()):
            info = tar.gettarinfo(str(source), arcname=target.lstrip("/"))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            with source.open("rb") as handle:
                tar.addfile(info, handle)
    return dest


def _blob_path(digest: str) -> str:
    return f"blobs/sha256/{digest.split(':', 1)[1]}"


def _blob(tar: tarfile.TarFile, data: bytes) -> tuple[str, int]:
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    info = tarfile.TarInfo(_blob_path(digest))
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
    return digest, len(data)


def write_archive(spec: ImageSpec, dest: Path) -> Path:
    """Write spec as an OCI image-layout tar at dest (atomically)."""
    layer_descriptors = []
    diff_ids = []
    dest.parent.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.NamedTemporaryFile(dir=dest.parent, delete=False, suffix=".partial") as tmp,
        tarfile.open(fileobj=tmp, mode="w") as tar,
    ):
        for layer in spec.layers:
            digest = file_digest(layer)
            size = layer.stat().st_size
            info = tarfile.TarInfo(_blob_path(digest))
            info.size = size
            with layer.open("rb") as handle:
                tar.addfile(info, handle)
            layer_descriptors.append({"mediaType": LAYER_MEDIA_TYPE, "digest": digest, "size": size})
            diff_ids.append(digest)  # uncompressed layers: digest == diff_id
        config: dict[str, object] = {
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Entrypoint": list(spec.entrypoint) or None,
                "Env": list(spec.env),
                "User": spec.user,
                "Labels": dict(spec.labels),
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
        config_digest, config_size = _blob(tar, json.dumps(config, sort_keys=True).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config_size},
            "layers": layer_descriptors,
        }
        manifest_digest, manifest_size = _blob(tar, json.dumps(manifest, sort_keys=True).encode())
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": MANIFEST_MEDIA_TYPE,
                    "digest": manifest_digest,
                    "size": manifest_size,
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": spec.name,
                        "org.opencontainers.image.ref.name": spec.name.rsplit(":", 1)[1],
                    },
                }
            ],
        }
        # Docker's `docker save` layout beside the OCI one (as `docker save` writes since v25):
        # kind's node-image build reads RepoTags from it; containerd's import reads index.json.
        docker_manifest = [
            {
                "Config": _blob_path(config_digest),
                "RepoTags": [spec.name],
                "Layers": [_blob_path(layer["digest"]) for layer in layer_descriptors],
            }
        ]
        for name, payload in (
            ("oci-layout", {"imageLayoutVersion": "1.0.0"}),
            ("index.json", index),
            ("manifest.json", docker_manifest),
        ):
            data = json.dumps(payload).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    Path(tmp.name).replace(dest)
    return dest
