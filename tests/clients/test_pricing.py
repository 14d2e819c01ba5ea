"""Prices (LiteLLM's map, the config's over it) and the usage arithmetic over calls."""

import pytest

from refed_dspy.clients.calls import CallInfo
from refed_dspy.clients.usage import Totals, usage_of
from refed_dspy.providers.prices import Price, default_price, resolve_price


def test_prices_and_cost():
    assert default_price("openai/gpt-4o-mini-2024-07-18") == Price(0.15, 0.075, 0.60)
    assert default_price("azure/gpt-4o") == Price(2.50, 1.25, 10.00)
    assert default_price("openai/my-finetune") is None
    assert resolve_price("openai/my-finetune", 1.0, None, 2.0) == Price(1.0, 1.0, 2.0)
    assert resolve_price("openai/gpt-4o-mini", None, None, 1.0) == Price(0.15, 0.075, 1.0)
    # 1000 prompt tokens (400 cached) + 100 completion at gpt-4o-mini prices
    assert Price(0.15, 0.075, 0.60).cost(1000, 100, 400) == pytest.approx((600 * 0.15 + 400 * 0.075 + 100 * 0.6) / 1e6)


def test_usage_counts_cache_hits_apart():
    calls = [
        CallInfo("generate", "m", 100, 10, 50),
        CallInfo("improve", "m", 200, 20, 0),
        CallInfo("improve", "m", cache_hit=True),
    ]
    u = usage_of(calls, Price(1.0, 0.5, 2.0))
    assert (u["calls"], u["cached_calls"], u["prompt_tokens"], u["completion_tokens"], u["cached_tokens"]) == (
        2,
        1,
        300,
        30,
        50,
    )
    assert u["cost_usd"] == pytest.approx((250 * 1.0 + 50 * 0.5 + 30 * 2.0) / 1e6)
    assert u["by_stage"]["improve"]["calls"] == 1 and u["by_stage"]["improve"]["cached_calls"] == 1
    t = Totals()
    t.add(u)
    t.add(u)
    assert t.calls == 4 and t.as_dict()["by_stage"]["generate"]["prompt_tokens"] == 200
    assert usage_of(calls, None)["cost_usd"] is None


def test_default_prices_come_from_litellms_map():
    """Hundreds of models priced without a table of ours; the config's prices win; an unknown model has none."""
    assert default_price("gemini/gemini-2.5-flash") is not None and default_price("deepseek/deepseek-chat") is not None
    haiku = default_price("anthropic/claude-haiku-4-5")
    assert haiku == default_price("anthropic/claude-haiku-4-5-20251001") and haiku.cached_input < haiku.input
    assert resolve_price("anthropic/claude-haiku-4-5", 2.0, None, None) == Price(2.0, 2.0, haiku.output)
    assert default_price("ollama_chat/llama3.1") is None


def test_prices_are_read_without_importing_litellm():
    """Importing LiteLLM takes seconds and over 100 MiB: a run that only needs prices (and keys under their usual
    names) must not pay that."""
    import subprocess
    import sys

    code = (
        "import os, sys; os.environ['OPENAI_API_KEY'] = 'k'\n"
        "from refed_dspy.clients.keys import api_key_env\n"
        "from refed_dspy.providers.prices import default_price\n"
        "from refed_dspy.config.lm import LMSpec\n"
        "assert default_price('openai/gpt-4o-mini').input == 0.15\n"
        "assert api_key_env(LMSpec(model='openai/gpt-4o-mini')) == 'OPENAI_API_KEY'\n"
        "print('litellm' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_a_cost_budget_for_a_misspelt_model_names_the_model_meant():
    from refed_dspy.clients.lm import require_price
    from refed_dspy.config.lm import LMSpec
    from refed_dspy.errors import ConfigError

    with pytest.raises(ConfigError, match=r"did you mean 'openai/gpt-4o-mini'\?"):
        require_price(LMSpec(model="openai/gpt-4o-minii"), "teacher", "synthesis.max_cost_usd")
    with pytest.raises(ConfigError) as err:  # a model of the user's own: nothing close, no guess
        require_price(LMSpec(model="openai/my-finetune-7"), "teacher", "synthesis.max_cost_usd")
    assert "did you mean" not in str(err.value)
