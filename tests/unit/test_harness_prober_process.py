"""harness.prober_process: a prober in a child process, against the fake server on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import time

import pytest
from harness import guarantees
from harness.prober_process import ProcessProber

from unit.test_harness_prober import FakeModelServer, server, target_for

__all__ = ["server"]  # the fixture, shared with test_harness_prober


def test_streams_records_while_running_and_hands_over_a_sealed_ledger(server):
    prober = ProcessProber(target_for(server), rate_per_s=50, max_duration_s=20, name="child")
    prober.start()
    assert prober.started_at is not None and prober.running
    prober.wait_for_requests(10, timeout_s=10)  # streamed before the stop
    assert prober.ledger().stopped_at is None
    records = prober.stop()
    ledger = prober.ledger()
    assert ledger.stopped_at is not None and not prober.running
    assert ledger.scheduled == len(records) == len(ledger.records) >= 10
    assert all(record.ok and record.prober == "child" for record in records)
    assert FakeModelServer.received == len(records)
    guarantees.sound(ledger)


def test_keep_alive_in_the_child_reuses_connections(server):
    prober = ProcessProber(target_for(server), rate_per_s=40, max_duration_s=20, name="ka", keep_alive=2)
    with prober:
        prober.wait_for_requests(20, timeout_s=10)
    assert prober.keep_alive == 2 and prober.ledger().transport == "a keep-alive pool of 2 connections"
    assert sum(1 for record in prober.records() if record.reused) >= len(prober.records()) // 2


def test_a_child_that_dies_leaves_an_unsealed_record_that_is_not_believed(server):
    prober = ProcessProber(target_for(server), rate_per_s=50, max_duration_s=20, name="dies", timeout_s=0.5)
    prober.start()
    prober.wait_for_requests(5, timeout_s=10)
    assert prober._process is not None and prober._process.pid is not None
    os.kill(prober._process.pid, signal.SIGKILL)
    started = time.monotonic()
    prober.stop()
    assert time.monotonic() - started < 40
    with pytest.raises(guarantees.SLOViolation, match="still running, so its record is incomplete"):
        guarantees.sound(prober.ledger())
