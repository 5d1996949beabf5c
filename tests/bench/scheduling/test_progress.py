"""The grid's status line: counts, ETA, one line per change in a log, and its durations."""
from __future__ import annotations

import io

import pytest

from bench.scheduling.progress import Progress, duration


def test_progress_line_counts_and_eta():
    buf = io.StringIO()
    p = Progress(5, True, stream=buf, in_place=False)
    p.slots, p.in_flight = 2, 4
    p.count({"status": "finished", "skipped": True})
    assert p.line().startswith("grid: 1/5 done (1 skipped) | 2 running, 2 pending |") and p.line().endswith("ETA ?")
    p.count({"status": "failed"})
    p.in_flight = 3
    assert "2/5 done (1 failed, 1 skipped) | 2 running, 1 pending" in p.line() and "ETA " in p.line()
    p.show()
    p.show()  # unchanged counts: no second line in a log
    assert buf.getvalue().count("\n") == 1
    p.count({"status": "finished"}), p.count({"status": "finished"}), p.count({"status": "finished"})
    p.in_flight = 0
    assert p.line().endswith("done") and "5/5 done" in p.line()


def test_progress_in_place_rewrites_one_line_and_ends_it():
    buf = io.StringIO()
    p = Progress(2, True, stream=buf, in_place=True)
    p.show()
    p.count({"status": "finished"})
    p.show()
    p.close()
    text = buf.getvalue()
    assert text.count("\r\033[K") == 2 and text.endswith("\n") and text.count("\n") == 1


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (59.4, "59s"), (60, "1m00s"), (250, "4m10s"),
                                           (3600, "1h00m"), (7500, "2h05m")])
def test_duration(seconds, text):
    assert duration(seconds) == text
