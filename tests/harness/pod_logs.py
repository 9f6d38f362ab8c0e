"""Follows the logs of every container in a namespace while a test runs.

A rolling upgrade deletes the pods whose last words explain a failure, so logs are
streamed as pods appear instead of fetched at the end. One short-lived thread per
container instance (a restarted container is followed again); each keeps its last lines.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import urllib3
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

LINES_KEPT = 400


class PodLogCollector:
    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self._core = client.CoreV1Api(api_client)
        self._logs: dict[str, deque[str]] = {}
        self._followed: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watch: watch.Watch | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PodLogCollector:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> PodLogCollector:
        self._thread = threading.Thread(target=self._watch_pods, name="pod-logs", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, str]:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
        if self._thread is not None:
            self._thread.join(5)
        return self.logs()

    def logs(self) -> dict[str, str]:
        """`pod/container#restart` -> its last lines, each prefixed with the harness's receive time."""
        with self._lock:
            return {key: "\n".join(lines) for key, lines in self._logs.items()}

    def _watch_pods(self) -> None:
        while not self._stop.is_set():
            self._watch = watch.Watch()
            try:
                for item in self._watch.stream(
                    self._core.list_namespaced_pod, self.namespace, timeout_seconds=30
                ):
                    self._follow_running_containers(item["object"])
                    if self._stop.is_set():
                        break
            except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError):
                self._stop.wait(1)

    def _follow_running_containers(self, pod: client.V1Pod) -> None:
        for status in pod.status.container_statuses or []:
            if not (status.state and status.state.running and status.container_id):
                continue
            key = f"{pod.metadata.name}/{status.name}#{status.restart_count}"
            with self._lock:
                if status.container_id in self._followed:
                    continue
                self._followed.add(status.container_id)
                self._logs[key] = deque(maxlen=LINES_KEPT)
            threading.Thread(
                target=self._follow,
                args=(pod.metadata.name, status.name, key),
                name=f"log-{key}",
                daemon=True,
            ).start()

    def _follow(self, pod: str, container: str, key: str) -> None:
        try:
            stream = self._core.read_namespaced_pod_log(
                pod, self.namespace, container=container, follow=True, _preload_content=False
            )
            pending = ""
            for chunk in stream.stream(amt=4096, decode_content=True):
                pending += chunk.decode("utf-8", "replace")
                complete, _, pending = pending.rpartition("\n")
                if complete:
                    self._append(key, complete)
                if self._stop.is_set():
                    break
            if pending:
                self._append(key, pending)
            stream.release_conn()
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            self._append(key, f"[harness: log stream ended: {type(exc).__name__}: {exc}]\n")

    def _append(self, key: str, chunk: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime())
        with self._lock:
            lines = self._logs.setdefault(key, deque(maxlen=LINES_KEPT))
            for line in chunk.splitlines():
                lines.append(f"[{stamp}] {line}")


def tail(text: str, lines: int) -> str:
    kept = text.splitlines()[-lines:]
    return "\n".join(kept)
