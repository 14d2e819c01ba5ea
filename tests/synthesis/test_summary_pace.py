"""The summary's samples line gives the run's pace in units a reader takes in (the newcomer trial: a local run of 3
samples read '0.00/s over 1601.7s')."""

from __future__ import annotations

from refed_dspy.synthesis.summary import _pace


def test_a_slow_run_s_pace_is_per_minute_or_hour_and_its_time_in_minutes():
    assert _pace(3 / 1601.7, 1601.7) == "0.11/min over 26m41s"
    assert _pace(1 / 36000, 36000) == "0.10/h over 10h00m"
    assert _pace(12.3, 3.14) == "12.30/s over 3.1s"  # a fast run as before
    assert _pace(None, 0.2) == "0.00/s over 0.2s"  # nothing made this time
