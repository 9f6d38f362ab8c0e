"""Keep one host process running, as the systemd units in a kind node do for containerd and kubelet.

``python -m ops.local_cluster.supervisor --name kubelet --pid-dir DIR --log FILE -- CMD...``
runs CMD with its output appended to FILE, restarts it with a growing back-off when it
exits, and on SIGTERM stops it (SIGTERM, then SIGKILL after a grace period) and exits.
Pid files: ``DIR/<name>.supervisor.pid`` (this process) and ``DIR/<name>.pid`` (CMD).
The child gets PR_SET_PDEATHSIG, so killing the supervisor never leaves it unsupervised.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from ops.local_cluster.processes import write_pidfile

PR_SET_PDEATHSIG = 1
STOP_GRACE_SECONDS = 20.0
MAX_BACKOFF_SECONDS = 10.0
HEALTHY_RUN_SECONDS = 60.0


def die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Supervisor:
    def __init__(self, name: str, command: list[str], pid_dir: Path, log: Path) -> None:
        self.name = name
        self.command = command
        self.pid_dir = pid_dir
        self.log = log
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping = False

    def note(self, message: str) -> None:
        with self.log.open("a") as handle:
            handle.write(f"[supervisor {time.strftime('%H:%M:%S')}] {self.name}: {message}\n")

    def request_stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)

    def run_once(self) -> int:
        with self.log.open("ab") as output:
            self.child = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd="/",
                preexec_fn=die_with_parent,
            )
        write_pidfile(self.pid_dir / f"{self.name}.pid", self.child.pid)
        try:
            return self.child.wait(timeout=None)
        finally:
            (self.pid_dir / f"{self.name}.pid").unlink(missing_ok=True)

    def finish_child(self) -> None:
        if self.child is None or self.child.poll() is not None:
            return
        try:
            self.child.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self.note(f"did not stop within {STOP_GRACE_SECONDS:.0f}s: SIGKILL")
            self.child.kill()
            self.child.wait()

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        write_pidfile(self.pid_dir / f"{self.name}.supervisor.pid", os.getpid())
        backoff = 1.0
        try:
            while not self.stopping:
                started = time.monotonic()
                code = self.run_once()
                if self.stopping:
                    break
                ran = time.monotonic() - started
                backoff = 1.0 if ran > HEALTHY_RUN_SECONDS else min(backoff * 2, MAX_BACKOFF_SECONDS)
                self.note(f"exited with {code} after {ran:.0f}s; restarting in {backoff:.0f}s")
                deadline = time.monotonic() + backoff
                while not self.stopping and time.monotonic() < deadline:
                    time.sleep(0.1)
            self.finish_child()
            self.note("stopped")
        finally:
            (self.pid_dir / f"{self.name}.supervisor.pid").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ops.local_cluster.supervisor", description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--pid-dir", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to supervise")
    Supervisor(args.name, command, args.pid_dir, args.log).run()


if __name__ == "__main__":
    sys.exit(main())
