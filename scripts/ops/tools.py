"""Pinned tooling (helm, ct, kind, helm-docs, actionlint) in the cache, linked into ./bin.

`python -m ops.tools install [NAME ...]` installs every tool (or the named ones). Each
tool first tries the release download a user's machine would use and falls back to
`go install` from the Go module proxy; both end up in `<cache>/tools/<name>-<version>/`.
A tool whose directory is complete and built by the same recipe (package, linker flags,
pinned hash) is only re-linked ("cached").
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ops.paths import BIN_DIR, REPO_ROOT, tool_dir
from ops.pins import KIND_VERSION
from ops.toolcache import (
    download,
    extract_member,
    go_env,
    go_install,
    is_complete,
    link_into_bin,
    log,
    mark_complete,
)

# ct shells out to these two Python tools; they come pinned from requirements-dev.txt.
CT_PYTHON_HELPERS = ("yamllint", "yamale")
CT_ETC_FILES = ("chart_schema.yaml", "lintconf.yaml")
RECIPE_FILE = ".recipe"


def go_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


@dataclass(frozen=True)
class Tool:
    """One pinned binary: where users download it, and the Go package that builds it."""

    name: str
    version: str
    go_module: str
    go_package: str
    # Release URL for linux/<arch> (what a user's machine downloads).
    release_url: Callable[[str], str]
    # Path suffix of the binary inside a .tar.gz release; None when the download is the bare binary.
    archive_member: str | None
    # Extra files copied out of the Go module source next to the binary (ct's etc/).
    module_files: tuple[str, ...] = field(default_factory=tuple)
    # Environment the binary needs; "{dir}" is the tool's cache directory. When set, ./bin
    # gets a two-line wrapper that exports it instead of a plain link.
    env: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    # h1: module hash to check ourselves when the checksum database has no record of the
    # version (the module proxy here answers 404 for it); None means Go's normal sumdb check.
    pinned_module_sum: str | None = None
    # Linker flags of the project's own release build that change behaviour (version stamps).
    ldflags: str = ""

    @property
    def directory(self) -> Path:
        return tool_dir(self.name, self.version)

    @property
    def binary(self) -> Path:
        return self.directory / self.name

    @property
    def recipe(self) -> str:
        """Everything that shapes the cached result; a change rebuilds the tool."""
        return json.dumps(
            [self.go_package, self.ldflags, self.module_files, self.pinned_module_sum], sort_keys=True
        )


HELM = Tool(
    name="helm",
    version="v3.17.4",
    go_module="helm.sh/helm/v3",
    go_package="helm.sh/helm/v3/cmd/helm",
    release_url=lambda arch: f"https://get.helm.sh/helm-v3.17.4-linux-{arch}.tar.gz",
    archive_member="/helm",
    # As helm's Makefile stamps its release: without these `helm version` says "v3.17" and
    # `helm template`/`helm lint` assume Kubernetes v1.20 (chart kubeVersion checks, deprecations).
    # The Kubernetes minor follows helm v3.17.4's k8s.io/client-go v0.32.
    ldflags=" ".join(
        [
            "-w -s",
            "-X helm.sh/helm/v3/internal/version.version=v3.17.4",
            "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1",
            "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=32",
            "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1",
            "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=32",
        ]
    ),
)
CT = Tool(
    name="ct",
    version="v3.12.0",
    go_module="github.com/helm/chart-testing/v3",
    go_package="github.com/helm/chart-testing/v3/ct",
    release_url=lambda arch: (
        "https://github.com/helm/chart-testing/releases/download/v3.12.0/"
        f"chart-testing_3.12.0_linux_{arch}.tar.gz"
    ),
    archive_member="ct",
    module_files=tuple(f"etc/{name}" for name in CT_ETC_FILES),
    # ct v3.12.0 looks for chart_schema.yaml/lintconf.yaml in CT_CONFIG_DIR, else ./, .ct,
    # ~/.ct, /usr/local/etc/ct, /etc/ct (pkg/config/config.go) - not next to its binary.
    env=(("CT_CONFIG_DIR", "{dir}/etc"),),
    # Recorded from proxy.golang.org (origin commit d6991035, tag v3.12.0); sum.golang.org
    # lookups for this version fail from these machines.
    pinned_module_sum="h1:fHligz9+UBABDrQGFI7xlQXpjG49k54xJCVBFXIo30o=",
    ldflags="-X github.com/helm/chart-testing/v3/ct/cmd.Version=v3.12.0",
)
KIND = Tool(
    name="kind",
    version=KIND_VERSION,
    go_module="sigs.k8s.io/kind",
    go_package="sigs.k8s.io/kind",
    release_url=lambda arch: f"https://kind.sigs.k8s.io/dl/{KIND_VERSION}/kind-linux-{arch}",
    archive_member=None,
)
HELM_DOCS = Tool(
    name="helm-docs",
    version="v1.14.2",
    go_module="github.com/norwoodj/helm-docs",
    go_package="github.com/norwoodj/helm-docs/cmd/helm-docs",
    release_url=lambda arch: (
        "https://github.com/norwoodj/helm-docs/releases/download/v1.14.2/"
        f"helm-docs_1.14.2_Linux_{'x86_64' if arch == 'amd64' else arch}.tar.gz"
    ),
    archive_member="helm-docs",
)
ACTIONLINT = Tool(
    name="actionlint",
    version="v1.7.12",
    go_module="github.com/rhysd/actionlint",
    go_package="github.com/rhysd/actionlint/cmd/actionlint",
    release_url=lambda arch: (
        f"https://github.com/rhysd/actionlint/releases/download/v1.7.12/actionlint_1.7.12_linux_{arch}.tar.gz"
    ),
    archive_member="actionlint",
    ldflags="-X github.com/rhysd/actionlint.version=v1.7.12",
)
TOOLS: dict[str, Tool] = {tool.name: tool for tool in (HELM, CT, KIND, HELM_DOCS, ACTIONLINT)}


def module_source_dir(tool: Tool) -> Path:
    """The tool's module source in Go's module cache (present after `go install`)."""
    gomodcache = subprocess.run(
        ["go", "env", "GOMODCACHE"], check=True, capture_output=True, text=True, env=go_env()
    ).stdout.strip()
    # The module cache escapes upper-case letters as "!" + lower case.
    escaped = re.sub(r"[A-Z]", lambda match: "!" + match.group().lower(), tool.go_module)
    return Path(gomodcache) / f"{escaped}@{tool.version}"


def fetch_release(tool: Tool, staging: Path) -> bool:
    """Download the release into staging; False when this machine cannot reach it."""
    url = tool.release_url(go_arch())
    if tool.archive_member is None:
        if not download(url, staging / tool.name):
            return False
        (staging / tool.name).chmod(0o755)
        return True
    archive = staging / "release.tar.gz"
    if not download(url, archive):
        return False
    extract_member(archive, tool.archive_member, staging / tool.name)
    for relative in tool.module_files:
        extract_member(archive, relative, staging / relative)
    archive.unlink()
    return True


def download_pinned_module(tool: Tool) -> Path:
    """Fetch a module the checksum database does not list, check it against our pin, return its source."""
    result = subprocess.run(
        ["go", "mod", "download", "-json", f"{tool.go_module}@{tool.version}"],
        check=True,
        capture_output=True,
        text=True,
        env=go_env() | {"GONOSUMDB": tool.go_module},
        cwd=tempfile.gettempdir(),
    )
    module = json.loads(result.stdout)
    if module["Sum"] != tool.pinned_module_sum:
        raise SystemExit(
            f"{tool.go_module}@{tool.version} hashes to {module['Sum']}, "
            f"pinned {tool.pinned_module_sum}: refusing to build"
        )
    log(f"{tool.go_module}@{tool.version} matches pinned {module['Sum']}")
    return Path(module["Dir"])


def build_pinned_module(tool: Tool, staging: Path) -> None:
    """What `go install pkg@version` does, for a module whose version list the proxy refuses.

    `go install` asks the proxy for the module's version list (deprecation check), which
    this proxy forbids for chart-testing; building the verified source with its own go.mod
    and go.sum yields the same binary.
    """
    source = download_pinned_module(tool)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"{tool.name}-src-") as workdir:
        shutil.copytree(source, workdir, dirs_exist_ok=True)
        for path in Path(workdir).rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        package = "./" + tool.go_package.removeprefix(tool.go_module).strip("/")
        log(f"go build {tool.go_package} from verified {tool.go_module}@{tool.version}")
        subprocess.run(
            ["go", "build", "-trimpath", "-ldflags", tool.ldflags, "-o", str(staging / tool.name), package],
            check=True,
            cwd=workdir,
            env=go_env() | {"GOFLAGS": "-mod=readonly"},
        )
    log(f"built {tool.go_package}@{tool.version} in {time.monotonic() - started:.0f}s")


def build_from_module(tool: Tool, staging: Path) -> None:
    if tool.pinned_module_sum:
        build_pinned_module(tool, staging)
    else:
        go_install(tool.go_package, tool.version, staging, ldflags=tool.ldflags)
    if tool.module_files:
        source = module_source_dir(tool)
        for relative in tool.module_files:
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / relative, target)
            target.chmod(0o644)


def is_cached(tool: Tool) -> bool:
    recipe_file = tool.directory / RECIPE_FILE
    return (
        is_complete(tool.directory)
        and tool.binary.exists()
        and recipe_file.exists()
        and recipe_file.read_text() == tool.recipe
    )


def install_tool(tool: Tool) -> str:
    """Make tool.binary exist in the cache; returns how ("cached", "downloaded", "built")."""
    if is_cached(tool):
        return "cached"
    staging = Path(tempfile.mkdtemp(prefix=f".{tool.name}-", dir=tool.directory.parent))
    try:
        how = "downloaded" if fetch_release(tool, staging) else None
        if how is None:
            build_from_module(tool, staging)
            how = "built"
        (staging / RECIPE_FILE).write_text(tool.recipe)
        mark_complete(staging)
        if tool.directory.exists():
            shutil.rmtree(tool.directory)
        staging.rename(tool.directory)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return how


def entrypoint(tool: Tool) -> Path:
    """What ./bin/<name> points at: the binary, or a wrapper exporting the tool's env."""
    if not tool.env:
        return tool.binary
    wrapper = tool.directory / "wrapper" / tool.name
    exports = "".join(
        f'export {key}="${{{key}:-{value.format(dir=tool.directory)}}}"\n' for key, value in tool.env
    )
    text = f'#!/bin/sh\n{exports}exec "{tool.binary}" "$@"\n'
    if not wrapper.exists() or wrapper.read_text() != text:
        wrapper.parent.mkdir(exist_ok=True)
        wrapper.write_text(text)
        wrapper.chmod(0o755)
    return wrapper


def link_ct_helpers() -> None:
    """ct runs yamllint and yamale from PATH: expose the venv's pinned copies in ./bin."""
    venv_bin = REPO_ROOT / ".venv" / "bin"
    for helper in CT_PYTHON_HELPERS:
        executable = venv_bin / helper
        if not executable.exists():
            raise SystemExit(f"{executable} is missing: run `make venv` (it installs requirements-dev.txt)")
        link_into_bin(executable)


def ensure(tool: Tool) -> Path:
    """The tool's binary, installed first if needed (for other ops modules that run it)."""
    if not is_cached(tool):
        log(f"{tool.name} {tool.version}: installing ({install_tool(tool)})")
    return tool.binary


def install(names: list[str]) -> None:
    unknown = sorted(set(names) - TOOLS.keys())
    if unknown:
        raise SystemExit(f"unknown tool(s) {', '.join(unknown)}; known: {', '.join(TOOLS)}")
    if shutil.which("go") is None:
        log("note: `go` is not on PATH; if a download fails there is no build fallback")
    started = time.monotonic()
    for name in names or list(TOOLS):
        tool = TOOLS[name]
        tool_started = time.monotonic()
        log(f"{tool.name} {tool.version}: installing")
        tool.directory.parent.mkdir(parents=True, exist_ok=True)
        how = install_tool(tool)
        link_into_bin(entrypoint(tool))
        if tool is CT:
            link_ct_helpers()
        elapsed = time.monotonic() - tool_started
        log(f"{tool.name} {tool.version}: {how} in {elapsed:.1f}s -> {BIN_DIR / tool.name}")
    log(f"done in {time.monotonic() - started:.1f}s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ops.tools", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    install_parser = commands.add_parser("install", help="install pinned tools into ./bin (all by default)")
    install_parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of: {', '.join(TOOLS)}")
    args = parser.parse_args(argv)
    if args.command == "install":
        install(args.names)


if __name__ == "__main__":
    main(sys.argv[1:])
