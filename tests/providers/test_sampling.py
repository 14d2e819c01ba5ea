"""A model's own settings where a config is silent (refed_dspy.providers.sampling and the provider files)."""

from __future__ import annotations

import pytest
from dspy.clients.lm import _is_openai_reasoning_model

from refed_dspy.config import LMSpec
from refed_dspy.providers import provider_for
from refed_dspy.providers.litellm_table import litellm_models
from refed_dspy.providers.openai import reasoning_family


def test_the_reasoning_families_are_the_ones_dspy_holds():
    """DSPy refuses an OpenAI reasoning model any temperature but 1 and fewer than 16,000 output tokens, by its own
    test of the model's name: refed's test agrees with it on every name in LiteLLM's table (a DSPy that changes its
    rule fails here, before a user's run does)."""
    names = [name for name, entry in litellm_models().items() if isinstance(entry, dict)]
    assert len(names) > 1000
    differ = [name for name in names if reasoning_family(name) != _is_openai_reasoning_model(name)]
    assert not differ, differ[:10]
    assert reasoning_family("openai/gpt-5-mini") and not reasoning_family("openai/gpt-5-chat-latest")


@pytest.mark.parametrize(
    "model, teacher, judge, max_tokens",
    [
        ("openai/gpt-4o-mini", 1.0, 0.0, 4096),
        ("openai/gpt-5-mini", 1.0, 1.0, 16000),
        ("azure/gpt-5-mini", 1.0, 1.0, 16000),  # a deployment named as the model it serves
        ("openrouter/openai/o4-mini", 1.0, 1.0, 16000),
        ("anthropic/claude-haiku-4-5", 1.0, 0.0, 4096),
        ("openai/my-own-server-model", 1.0, 0.0, 4096),
    ],
)
def test_what_a_silent_section_sends(model, teacher, judge, max_tokens):
    spec = LMSpec(model=model)
    assert spec.temperature is None and spec.max_tokens is None  # unset: the model's own
    assert (spec.temperature_for("teacher"), spec.temperature_for("judge"), spec.output_limit) == (
        teacher,
        judge,
        max_tokens,
    )
    assert spec.lm_kwargs(role="judge")["temperature"] == judge


def test_which_efforts_a_model_takes_comes_from_litellms_table():
    assert provider_for("openai/gpt-4o-mini").sampling("openai/gpt-4o-mini").efforts == ()  # it does not reason
    assert provider_for("openai/gpt-5.1").sampling("openai/gpt-5.1").efforts == ("low", "medium", "high")
    assert "minimal" in provider_for("openai/gpt-5-mini").sampling("openai/gpt-5-mini").efforts
    assert provider_for("openai/unknown-x").sampling("openai/unknown-x").efforts is None  # not known: any is sent
