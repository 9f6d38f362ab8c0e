"""bench.inprocess: the driver counts what was not answered 200, and the report's arithmetic."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from bench.inprocess import Driver, RoundResult, report


def test_report_gives_median_and_range_per_app_and_the_gap_per_round() -> None:
    results = [
        # 10,000 requests: 0.5 s of loop CPU = 50 us/req, and so on.
        RoundResult("ours", 10_000, 1.0, 0.5, 0.2, 0.1),  # 80 us/req
        RoundResult("ceiling", 10_000, 0.25, 0.2, 0.0, 0.0),  # 20 us/req
        RoundResult("ours", 10_000, 1.0, 0.6, 0.2, 0.1),  # 90 us/req
        RoundResult("ceiling", 10_000, 0.25, 0.25, 0.0, 0.0),  # 25 us/req
        RoundResult("ours", 10_000, 2.0, 0.4, 0.2, 0.1),  # 70 us/req
        RoundResult("ceiling", 10_000, 0.5, 0.3, 0.0, 0.0),  # 30 us/req
    ]
    lines = report(results).splitlines()
    ours = next(line for line in lines if line.startswith("ours "))
    ceiling = next(line for line in lines if line.startswith("ceiling "))
    assert "80.0 (70.0-90.0)" in ours  # total
    assert "50.0 (40.0-60.0)" in ours  # event loop
    assert ours.split()[-1] == "10000"  # median of 10,000, 10,000 and 5,000 req/s
    assert "25.0 (20.0-30.0)" in ceiling
    # Per round 60, 65, 40: the median of the differences, not the difference of medians (55).
    assert lines[-1] == "ours - ceiling, per round (us/req):    60.0 (40.0-65.0)"


def test_report_splits_the_gap_into_features_and_batching_when_the_bare_server_ran() -> None:
    results = [
        RoundResult("ours", 1_000, 1.0, 0.05, 0.0, 0.0),  # 50 us/req
        RoundResult("bare", 1_000, 1.0, 0.03, 0.0, 0.0),  # 30
        RoundResult("ceiling", 1_000, 1.0, 0.01, 0.0, 0.0),  # 10
        RoundResult("ours", 1_000, 1.0, 0.06, 0.0, 0.0),  # 60
        RoundResult("bare", 1_000, 1.0, 0.05, 0.0, 0.0),  # 50
        RoundResult("ceiling", 1_000, 1.0, 0.02, 0.0, 0.0),  # 20
        RoundResult("ours", 1_000, 1.0, 0.07, 0.0, 0.0),  # 70
        RoundResult("bare", 1_000, 1.0, 0.04, 0.0, 0.0),  # 40
        RoundResult("ceiling", 1_000, 1.0, 0.01, 0.0, 0.0),  # 10
    ]
    gaps = [line for line in report(results).splitlines() if ", per round" in line]
    assert gaps == [
        "ours - bare, per round (us/req):    20.0 (10.0-30.0)",
        "bare - ceiling, per round (us/req):    30.0 (20.0-30.0)",
        "ours - ceiling, per round (us/req):    40.0 (40.0-60.0)",
    ]


def test_report_without_the_ceiling_prints_no_gap() -> None:
    text = report([RoundResult("ours", 100, 1.0, 0.01, 0.0, 0.0)])
    assert "ours - ceiling" not in text


def test_driver_counts_every_answer_that_is_not_200_and_sends_the_body_it_was_given() -> None:
    bodies: list[bytes] = []
    statuses = iter([200, 500, 200, 429, 200])

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["path"] == "/v1/models/m:predict" and scope["method"] == "POST"
        bodies.append((await receive())["body"])
        await send({"type": "http.response.start", "status": next(statuses), "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    driver = Driver("/v1/models/m:predict", b'{"instances": [1]}')
    asyncio.run(driver.run(app, requests=5, concurrency=2))
    assert bodies == [b'{"instances": [1]}'] * 5
    assert driver.failures == 2


@pytest.mark.parametrize("concurrency", [1, 3, 64])
def test_driver_sends_exactly_the_requests_asked_whatever_the_concurrency(concurrency: int) -> None:
    sent = 0

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal sent
        sent += 1
        await asyncio.sleep(0)
        await send({"type": "http.response.start", "status": 200, "headers": []})

    asyncio.run(Driver("/", b"").run(app, requests=10, concurrency=concurrency))
    assert sent == 10
