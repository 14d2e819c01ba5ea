"""A model LiteLLM's map deprecates (its date passed, or within 30 days) gets one note naming its successor where the
map has one (gpt-5-mini: 2026-12-11, gpt-5.6-terra; nothing said so before)."""

from __future__ import annotations

import datetime as dt

from refed_dspy.providers.litellm_table import NOTICE_DAYS, deprecation, deprecation_note


def test_a_date_within_the_notice_or_passed_is_said_with_the_successor_under_the_models_prefix():
    date = deprecation("openai/gpt-5-mini").date
    assert date == dt.date(2026, 12, 11) and deprecation("gpt-5-mini-2025-08-07") is not None
    near = deprecation_note("openai/gpt-5-mini", "teacher", today=date - dt.timedelta(days=15))
    assert near == (
        "note: teacher openai/gpt-5-mini reaches its deprecation date, 2026-12-11, in 15 days, by LiteLLM's model "
        "table; its successor is openai/gpt-5.6-terra (set teacher.model)"
    )
    passed = deprecation_note("openai/gpt-5-mini", "judge", today=date + dt.timedelta(days=3))
    assert "passed its deprecation date, 2026-12-11, 3 days ago" in passed and "(set judge.model)" in passed
    assert "today" in deprecation_note("openai/gpt-5-mini", today=date)
    assert deprecation_note("openai/gpt-5-mini", today=date - dt.timedelta(days=NOTICE_DAYS + 1)) is None


def test_a_model_without_a_date_or_unknown_to_the_map_is_said_nothing_of():
    today = dt.date(2026, 11, 26)
    for model in ("openai/gpt-5.6-luna", "openai/smollm2", "anthropic/claude-haiku-4-5", "somecloud/x"):
        assert deprecation_note(model, today=today) is None, model
    # a successor named with its own prefix keeps it; a model the map names none for is told to choose another
    bedrock = deprecation_note("bedrock/anthropic.claude-sonnet-4-20250514-v1:0", today=today)
    assert "its successor is bedrock/anthropic.claude-sonnet-5 " in bedrock
    assert deprecation_note("azure_ai/claude-haiku-4-5", today=today).endswith(
        "its successor is azure_ai/claude-haiku-5-5 (set teacher.model)"
    )
    no_successor = deprecation_note("gpt-5.5-cyber-preview", today=dt.date(2027, 1, 20))
    assert no_successor.endswith("; choose another teacher.model")
