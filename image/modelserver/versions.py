"""Model versions, live: each model's version policy applied to what is on disk, as TF Serving does.

The manager runs on the event loop; what touches TensorFlow or the disk runs on the
loader thread (loader.py), never on the inference thread, so inference goes on while a
version loads. Every `TFMS_FILE_SYSTEM_POLL_WAIT_SECONDS` it looks at each model's base
path, and the policy (`latest { num_versions }`, `all {}`, `specific { versions }`)
names the versions to serve (aspired). Each model is then brought there one action at a
time, chosen as TF Serving's AvailabilityPreservingPolicy chooses (`next_action`):

- a version that is no longer aspired is unloaded only when an aspired version is
  available (or none is aspired at all, or several unaspired ones serve): the new
  version is AVAILABLE before the old one goes;
- otherwise the newest aspired version not yet loaded is loaded and warmed up, and only
  then takes traffic (published in the registry).

Each version goes LOADING -> AVAILABLE -> UNLOADING -> END (TF Serving's states). A
version that fails to load ends in END with its error, visible in `/v1/models/{m}`,
`/v2/models/{m}/versions/{v}/ready`, `tfms_model_version_state`,
`tfms_model_load_failures_total` and the log; it never takes traffic, the versions that
served keep serving, and it is tried again only once its files change (a copy that was
still under way, or a fixed export). Unloading takes the version out of the registry
first (no request finds it any more), then lets its runners finish what they hold and
waits for every call already on the inference thread before letting it go.

Labels (`version_labels`) move only to an available version: until the version a label
names is available the label keeps naming the one it named (or, if new, answers 503
naming the version it waits for). This is TF Serving's rule, kept without its cost: TF
Serving refuses a config whose label names an unavailable version unless
--allow_version_labels_for_unavailable_models.

With a config file, the file is re-read every `TFMS_MODEL_CONFIG_FILE_POLL_WAIT_SECONDS`:
models added or removed, policies and labels changed apply without a restart. A file
that cannot be parsed or checked is refused whole and changes nothing (logged, and
counted in `tfms_model_config_reloads_total{outcome="refused"}`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass

from modelserver import PROCESS_STARTED, errors, loader
from modelserver.inference import ModelService
from modelserver.metrics import Metrics
from modelserver.model_config import ModelConfig, ModelConfigError, ServerConfig, read_file
from modelserver.repository import ModelEntry, ModelRegistry, VersionState, VersionStatus, fingerprint
from modelserver.settings import Settings

log = logging.getLogger(__name__)

# Versions in END (unloaded, or failed) kept per model for the status APIs.
ENDED_KEPT = 10


@dataclass(frozen=True)
class Action:
    kind: str  # "load" | "unload"
    version: int


def next_action(
    available: Collection[int], aspired: Collection[int], loadable: Collection[int]
) -> Action | None:
    """TF Serving's AvailabilityPreservingPolicy::GetNextAction over one model's versions.

    `available`: versions serving now; `aspired`: what the policy wants (whatever their
    state, failed ones included); `loadable`: aspired versions that may be loaded now.
    """
    aspired_set = set(aspired)
    unaspired_serving = sorted(set(available) - aspired_set)
    has_aspired_serving = bool(set(available) & aspired_set)
    if unaspired_serving and (not aspired_set or has_aspired_serving or len(unaspired_serving) > 1):
        return Action("unload", unaspired_serving[0])
    if loadable:
        return Action("load", max(loadable))
    return None


def error_code(error: BaseException) -> str:
    """A load error's canonical code name (TensorFlow's error_code when it has one)."""
    return errors.CANONICAL_CODES.get(getattr(error, "error_code", 2), ("UNKNOWN", 500))[0]


class VersionManager:
    def __init__(
        self,
        config: ServerConfig,
        settings: Settings,
        registry: ModelRegistry,
        service: ModelService,
        metrics: Metrics,
        loader_executor: Executor,
        models_changed: Callable[[Iterable[str]], None] = lambda names: None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.registry = registry
        self.service = service
        self.metrics = metrics
        self.loader_executor = loader_executor
        self.models_changed = models_changed
        self.counts = loader.thread_counts(settings)
        # (model, version) -> the files of a version that failed to load, when it failed.
        self.failed: dict[tuple[str, int], tuple[tuple[str, int, int], ...]] = {}
        self.refused_config: str | None = None
        metrics.watch_versions(self.version_states, self.label_versions)

    # -- the loop ------------------------------------------------------------------

    async def run(self) -> None:
        """Load what the config asks for, then keep following the disk and the config file."""
        if not self.registry.models:
            log.warning("no models configured (%s): the server will never be ready", self.config.origin)
        await self.reconcile_all()
        self.registry.started = True
        if self.registry.all_ready():
            log.info(
                "all models ready %.2fs after start: %s",
                time.monotonic() - PROCESS_STARTED,
                ", ".join(self.registry.names),
            )
        await self.poll_forever()

    async def poll_forever(self) -> None:
        disk_every = self.settings.file_system_poll_wait_seconds
        config_every = self.settings.model_config_file_poll_wait_seconds if self.config.file else 0.0
        now = time.monotonic()
        next_disk, next_config = now + disk_every, now + config_every
        while disk_every > 0 or config_every > 0:
            due = min(t for t, every in ((next_disk, disk_every), (next_config, config_every)) if every > 0)
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            now = time.monotonic()
            if config_every > 0 and now >= next_config:
                await self.reload_config()
                next_config = time.monotonic() + config_every
            if disk_every > 0 and now >= next_disk:
                await self.reconcile_all()
                next_disk = time.monotonic() + disk_every

    async def in_loader(self, function: Callable[..., object], *args: object) -> object:
        return await asyncio.get_running_loop().run_in_executor(self.loader_executor, function, *args)

    # -- the config file -------------------------------------------------------------

    async def reload_config(self) -> None:
        assert self.config.file is not None
        try:
            config = await self.in_loader(read_file, self.config.file)
        except ModelConfigError as error:
            if str(error) != self.refused_config:  # once per distinct problem, not every poll
                self.refused_config = str(error)
                self.metrics.config_reloads.labels("refused").inc()
                log.error("model config not applied, still serving the previous one: %s", error)
            return
        assert isinstance(config, ServerConfig)
        self.refused_config = None
        if config.models == self.config.models:
            return
        self.apply(config)
        self.metrics.config_reloads.labels("applied").inc()
        await self.reconcile_all()

    def apply(self, config: ServerConfig) -> None:
        """Switch to a new config: models added, removed (unloaded by `reconcile_all`) or changed."""
        old = {model.name: model for model in self.config.models}
        new = {model.name: model for model in config.models}
        for name in sorted(old.keys() - new.keys()):
            log.info("model config: model %s removed; unloading its versions", name)
        for name in sorted(new.keys() - old.keys()):
            log.info("model config: model %s added (%s)", name, describe(new[name]))
            # A model a reload adds gates readiness only once it has been available.
            self.registry.models[name] = ModelEntry(new[name], gates_readiness=False)
        for name in sorted(old.keys() & new.keys()):
            if old[name] != new[name]:
                log.info(
                    "model config: model %s now %s (was %s)", name, describe(new[name]), describe(old[name])
                )
                self.registry.models[name].config = new[name]
        self.config = config
        self.models_changed(new)

    # -- one model ---------------------------------------------------------------------

    async def reconcile_all(self) -> None:
        for name, entry in list(self.registry.models.items()):
            try:
                if self.config.model(name) is None:
                    await self.remove(entry)
                else:
                    await self.reconcile(entry)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one model's trouble stop the others' polling
                log.exception("model %s: poll failed", name)

    async def reconcile(self, entry: ModelEntry) -> None:
        """Bring one model to what its policy asks of the disk, one TF Serving action at a time."""
        config = entry.config
        failed = frozenset(v for (name, v) in self.failed if name == entry.name)
        disk = await self.in_loader(loader.scan, config.base_path, failed)
        assert isinstance(disk, loader.DiskScan)
        if not disk.exists:
            # file_system_storage_path_source.cc: a missing base path is an error, not "no versions".
            self.set_problem(entry, f"Could not find base path {config.base_path} for servable {entry.name}")
            return
        aspired = config.policy.select(disk.versions)
        self.set_problem(
            entry,
            None
            if aspired
            else f"no version under {config.base_path} matches its version policy "
            f"({config.policy.describe()}); on disk: {', '.join(map(str, disk.versions)) or 'none'}",
        )
        self.apply_labels(entry)
        attempted: set[int] = set()

        def may_load(version: int) -> bool:
            if version in entry.serving or version in attempted:
                return False
            files = self.failed.get((entry.name, version))
            return files is None or files != disk.fingerprints.get(version)

        while True:
            action = next_action(entry.serving.keys(), aspired, {v for v in aspired if may_load(v)})
            if action is None:
                break
            if action.kind == "load":
                attempted.add(action.version)
                await self.load(entry, action.version, disk)
            else:
                await self.unload(entry, action.version)
            self.apply_labels(entry)
            if self.registry.models.get(entry.name) is not entry:
                return  # removed by a config reload meanwhile

    async def load(self, entry: ModelEntry, version: int, disk: loader.DiskScan) -> None:
        name, path = entry.name, disk.versions[version]
        retry = (name, version) in self.failed
        self.set_status(entry, VersionStatus(version, VersionState.LOADING))
        log.info(
            "model %s: loading version %d from %s%s",
            name,
            version,
            path,
            " (its files changed since it failed: trying again)" if retry else "",
        )
        try:
            result = await self.in_loader(loader.load_and_warm_up, self.counts, name, version, path)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            message = f"{type(error).__name__}: {error}"
            self.set_status(entry, VersionStatus(version, VersionState.END, error_code(error), message))
            self.failed[(name, version)] = await self.in_loader(fingerprint, path)  # type: ignore[assignment]
            self.metrics.model_load_failures.labels(name, str(version)).inc()
            serving = ", ".join(map(str, entry.serving)) or "none"
            log.error(
                "model %s: version %d failed to load and takes no traffic (serving: %s): %s",
                name,
                version,
                serving,
                message,
                exc_info=error,
            )
            return
        model, warmup_seconds = result  # type: ignore[misc]
        self.failed.pop((name, version), None)
        self.service.start_runners(model)
        entry.publish({**entry.serving, version: model})
        entry.gates_readiness = True
        self.set_status(entry, VersionStatus(version, VersionState.AVAILABLE))
        self.metrics.model_load_seconds.labels(name, model.version_text).set(model.load_seconds)
        self.metrics.model_warmup_seconds.labels(name, model.version_text).set(warmup_seconds)
        log.info(
            "model %s: version %d available (loaded in %.2fs, warmed up in %.2fs; signatures %s); serving %s",
            name,
            version,
            model.load_seconds,
            warmup_seconds,
            ", ".join(sorted(model.signatures)),
            ", ".join(map(str, entry.serving)),
        )

    async def unload(self, entry: ModelEntry, version: int) -> None:
        model = entry.serving[version]
        entry.publish({v: m for v, m in entry.serving.items() if v != version})
        self.set_status(entry, VersionStatus(version, VersionState.UNLOADING))
        log.info(
            "model %s: unloading version %d (serving now: %s)",
            entry.name,
            version,
            ", ".join(map(str, entry.serving)) or "none",
        )
        await self.service.stop_runners(model)
        await self.in_loader(loader.release, model)
        del model
        self.set_status(entry, VersionStatus(version, VersionState.END))
        await self.in_loader(loader.collect)
        log.info("model %s: version %d unloaded", entry.name, version)

    async def remove(self, entry: ModelEntry) -> None:
        """A model the config no longer lists: no request finds it, then its versions go."""
        self.registry.models.pop(entry.name, None)
        for version in list(entry.serving):
            await self.unload(entry, version)
        self.failed = {key: value for key, value in self.failed.items() if key[0] != entry.name}

    # -- labels and state ------------------------------------------------------------------

    def apply_labels(self, entry: ModelEntry) -> None:
        """Labels of the config that name an available version; the others keep what they named."""
        wanted = entry.config.labels
        labels = {label: version for label, version in entry.labels.items() if label in wanted}
        for label, version in wanted.items():
            if version in entry.serving:
                labels[label] = version
        if labels == dict(entry.labels):
            return
        for label, version in sorted(labels.items()):
            if entry.labels.get(label) != version:
                log.info("model %s: label %s now names version %d", entry.name, label, version)
        for label in sorted(entry.labels.keys() - labels.keys()):
            log.info("model %s: label %s removed", entry.name, label)
        entry.set_labels(labels)

    def set_status(self, entry: ModelEntry, status: VersionStatus) -> None:
        entry.versions[status.version] = status
        ended = sorted(v for v, s in entry.versions.items() if s.state is VersionState.END)
        for version in ended[:-ENDED_KEPT]:
            del entry.versions[version]

    @staticmethod
    def set_problem(entry: ModelEntry, problem: str | None) -> None:
        if problem != entry.problem:
            if problem is not None:
                log.warning("model %s: %s", entry.name, problem)
            entry.problem = problem

    def version_states(self) -> Iterable[tuple[str, str, str]]:
        for entry in self.registry.models.values():
            for status in entry.versions.values():
                yield entry.name, str(status.version), status.state.value

    def label_versions(self) -> Iterable[tuple[str, str, str]]:
        for entry in self.registry.models.values():
            for label, version in entry.labels.items():
                yield entry.name, label, str(version)


def describe(model: ModelConfig) -> str:
    labels = ", ".join(f"{label}={version}" for label, version in model.labels.items())
    return f"{model.base_path}, {model.policy.describe()}" + (f", labels {labels}" if labels else "")
