"""ops.progress: every step is logged when it starts and ends, failures included, and summarised."""

from __future__ import annotations

import pytest
from ops.progress import Steps


def test_steps_log_start_and_end_and_summarise_failures_too():
    lines: list[str] = []
    steps = Steps(lines.append)
    with steps.step("build"):
        pass
    with pytest.raises(ValueError), steps.step("load"):
        raise ValueError("broken")
    assert lines[0] == "build ..." and lines[1].startswith("build: done in ")
    assert lines[2] == "load ..." and lines[3].startswith("load: FAILED after ")
    summary = steps.summary().splitlines()
    assert [line.split()[1:] for line in summary[:2]] == [["ok", "build"], ["FAILED", "load"]]
    assert summary[-1].endswith("total")
