"""Prices (LiteLLM's map, the config's over it) and the usage arithmetic over calls."""

import pytest

from refed_dspy.clients.calls import CallInfo
from refed_dspy.ledger.usage import Totals, usage_of
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
    # the input price set, the cache-write price keeps the map's ratio to it (Anthropic's 1.25x): never below it
    assert haiku.cache_write == pytest.approx(1.25 * haiku.input)
    assert resolve_price("anthropic/claude-haiku-4-5", 2.0, None, None) == Price(2.0, 2.0, haiku.output, 2.5)
    assert default_price("ollama_chat/llama3.1") is None


def test_prices_are_read_without_importing_litellm():
    """Importing LiteLLM takes seconds and over 100 MiB: a run that only needs prices (and keys under their usual
    names) must not pay that."""
    import subprocess
    import sys

    code = (
        "import os, sys; os.environ['OPENAI_API_KEY'] = 'k'\n"
        "from refed_dspy.providers.prices import default_price\n"
        "from refed_dspy.config.lm import LMSpec\n"
        "assert default_price('openai/gpt-4o-mini').input == 0.15\n"
        "assert LMSpec(model='openai/gpt-4o-mini').key_variable() == 'OPENAI_API_KEY'\n"
        "print('litellm' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_a_cost_budget_for_a_misspelt_model_names_the_model_meant():
    from refed_dspy.config.lm import LMSpec, require_price
    from refed_dspy.errors import ConfigError

    with pytest.raises(ConfigError, match=r"did you mean 'openai/gpt-4o-mini'\?"):
        require_price(LMSpec(model="openai/gpt-4o-minii"), "teacher", "synthesis.max_cost_usd")
    with pytest.raises(ConfigError) as err:  # a model of the user's own: nothing close, no guess
        require_price(LMSpec(model="openai/my-finetune-7"), "teacher", "synthesis.max_cost_usd")
    assert "did you mean" not in str(err.value)


def test_cache_reads_and_writes_are_priced_at_the_providers_rates():
    """Anthropic: a read at a tenth of the input price, a write at 1.25x; refed's prompt tokens include both."""
    haiku = default_price("anthropic/claude-haiku-4-5")
    assert (haiku.input, haiku.cached_input, haiku.output, haiku.cache_write) == (1.0, 0.1, 5.0, 1.25)
    # 1000 prompt tokens: 400 read from the cache, 500 written to it, 100 neither; 100 completion
    assert haiku.cost(1000, 100, 400, 500) == pytest.approx((100 * 1.0 + 400 * 0.1 + 500 * 1.25 + 100 * 5.0) / 1e6)
    # OpenAI writes at the input price (its cache is free to fill)
    mini = default_price("openai/gpt-4o-mini")
    assert mini.cache_write is None and mini.cost(1000, 0, 0, 500) == mini.cost(1000, 0)
    # the most a call can cost: its whole prompt written
    assert haiku.bound(1000, 100) == pytest.approx((1000 * 1.25 + 100 * 5.0) / 1e6)
    assert haiku.bound(1000, 100) > haiku.cost(1000, 100)
    assert mini.bound(1000, 100) == mini.cost(1000, 100)
    assert haiku.scaled(0.5).cache_write == 0.625  # batch: written at half the price too
    assert resolve_price("anthropic/claude-haiku-4-5", None, None, None, 3.0).cache_write == 3.0


def test_usage_sums_cache_writes_and_prices_them():
    haiku = default_price("anthropic/claude-haiku-4-5")
    calls = [
        CallInfo("generate", "m", 5000, 100, cached_tokens=0, cache_write_tokens=4500),
        CallInfo("generate", "m", 5000, 100, cached_tokens=4500),
    ]
    u = usage_of(calls, haiku)
    assert (u["prompt_tokens"], u["cached_tokens"], u["cache_write_tokens"]) == (10000, 4500, 4500)
    assert u["cost_usd"] == pytest.approx(haiku.cost(10000, 200, 4500, 4500))
    assert u["cost_usd"] == pytest.approx(sum(c.cost_at(haiku) for c in calls))
    t = Totals()
    t.add(u)
    assert (
        t.as_dict()["cache_write_tokens"] == 4500 and t.as_dict()["by_stage"]["generate"]["cache_write_tokens"] == 4500
    )


def test_a_reply_of_dspys_own_client_counts_the_cache_in_the_prompt():
    """DSPy's own client (lm15) reports Anthropic's counters as sent: input tokens without the cache's. Where refed
    gives the LM its own engine DSPy does not add them (it does only where it picked the client): refed does."""
    from dspy.lm15 import Message, Response, TextPart, Usage

    from refed_dspy.clients.calls import read_reply

    def reply(model: str, raw: Usage) -> Response:
        text = Message(role="assistant", parts=(TextPart("hi"),))
        return Response(id="r", model=model, message=text, finish_reason="stop", usage=raw)

    raw = Usage(input_tokens=30, output_tokens=7, cache_read_tokens=4000, cache_write_tokens=500)
    response = reply("claude-haiku-4-5", raw)
    usage = {"prompt_tokens": 30, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 4000}}
    entry = {"usage": usage, "response": response, "outputs": ["hi"]}
    info = read_reply(entry, "generate", "anthropic/claude-haiku-4-5", 0.1, False).info
    assert (info.prompt_tokens, info.cached_tokens, info.cache_write_tokens) == (4530, 4000, 500)
    # already added (the client DSPy picks itself): the same figures
    entry["usage"] = {**usage, "prompt_tokens": 4530}
    assert read_reply(entry, "generate", "anthropic/claude-haiku-4-5", 0.1, False).info.prompt_tokens == 4530
    # OpenAI's input tokens include the cached ones
    response = reply("gpt-4o-mini", Usage(input_tokens=5000, output_tokens=7, cache_read_tokens=4000))
    entry = {"usage": {"prompt_tokens": 5000, "completion_tokens": 7}, "response": response, "outputs": ["hi"]}
    info = read_reply(entry, "generate", "openai/gpt-4o-mini", 0.1, False).info
    assert (info.prompt_tokens, info.cached_tokens, info.cache_write_tokens) == (5000, 4000, 0)


def test_a_reply_of_dspys_own_client_counts_hidden_reasoning_in_the_completion():
    """Gemini's and xAI's output tokens leave their hidden reasoning out, and it is billed as output: DSPy adds it only
    where it picked the client itself, so on engines of refed's (every LM a run holds) refed does. OpenAI's output
    tokens hold it already."""
    from dspy.lm15 import Message, Response, TextPart, Usage

    from refed_dspy.clients.calls import read_reply

    def completion(model: str, usage: dict) -> int:
        text = Message(role="assistant", parts=(TextPart("hi"),))
        raw = Usage(input_tokens=20, output_tokens=5, reasoning_tokens=100)
        response = Response(id="r", model=model.split("/")[1], message=text, finish_reason="stop", usage=raw)
        entry = {"usage": usage, "response": response, "outputs": ["hi"]}
        return read_reply(entry, "generate", model, 0.1, False).info.completion_tokens

    as_sent = {"prompt_tokens": 20, "completion_tokens": 5, "completion_tokens_details": {"reasoning_tokens": 100}}
    added = {**as_sent, "completion_tokens": 105}  # the client DSPy picks itself: the same figure
    for model in ("gemini/gemini-2.5-flash", "xai/grok-3-mini", "vertex_ai/gemini-2.5-pro"):
        assert completion(model, as_sent) == completion(model, added) == 105, model
    assert completion("openai/o4-mini", as_sent) == 5


def test_a_budget_reserves_a_call_at_its_prompt_written_to_the_cache():
    from refed_dspy.ledger.budget import CallBudget, prior_prompt_tokens

    haiku = default_price("anthropic/claude-haiku-4-5")
    reserved = CallBudget(max_cost_usd=1.0).call_cost(haiku, 1000, "teacher")
    assert reserved == pytest.approx((prior_prompt_tokens("teacher") * 1.25 + 1000 * 5.0) / 1e6)
    assert CallBudget(max_cost_usd=1.0).prompt_cost(haiku, 1000, "teacher", 3000) == pytest.approx(
        (3001 * 1.25 + 1000 * 5.0) / 1e6
    )


def test_both_ledgers_open_a_call_at_its_prompt_written_to_the_cache():
    # the run's ledger and an engine task's both open a call through tickets.call_bounds: its worst case and what it is
    # reserved at price its counted prompt as written whole to Anthropic's cache (1.25x the input price)
    from refed_dspy.ledger.budget import CallBudget
    from refed_dspy.ledger.tickets import TaskLedger

    haiku = default_price("anthropic/claude-haiku-4-5")
    written = (3001 * 1.25 + 1000 * 5.0) / 1e6  # the prompt counted at 3,000 tokens (raised by one), max_tokens 1,000
    budget = CallBudget(max_cost_usd=10.0)
    own = budget.open_call("teacher", "anthropic/claude-haiku-4-5", "generate", haiku, 1000, 3000)
    task = TaskLedger(budget, haiku, 1000, "teacher", None, reserved=0.0)
    tasks = task.open_call("teacher", "anthropic/claude-haiku-4-5", "generate", None, 1000, 3000)
    for ticket in (own, tasks):
        assert ticket.cost == pytest.approx(written) and ticket.need == pytest.approx(written)
        assert ticket.cost > haiku.cost(3001, 1000)


def test_a_model_the_list_does_not_price_is_priced_at_its_providers_cache_rates():
    # an Anthropic model LiteLLM's map does not know yet, priced in the config: a cache write costs Anthropic's 1.25x
    # of its input and a read 0.1x (the write was priced at the input, so a budget reserved 20% too little for it)
    new = resolve_price("anthropic/claude-next-9", 2.0, None, 10.0)
    assert (new.input, new.cached_input, new.cache_write, new.output) == (2.0, 0.2, 2.5, 10.0)
    assert new.bound(1_000_000, 0) == pytest.approx(2.5)
    assert new.cost(1000, 0, 0, 1000) == pytest.approx(1000 * 2.5 / 1e6)
    # the config's own rates are kept; a provider that caches by itself keeps the input price for both
    assert resolve_price("anthropic/claude-next-9", 2.0, 0.3, 10.0, 3.0).cache_write == 3.0
    assert resolve_price("anthropic/claude-next-9", 2.0, 0.3, 10.0).cached_input == 0.3
    mine = resolve_price("openai/my-finetune", 2.0, None, 10.0)
    assert (mine.cached_input, mine.written) == (2.0, 2.0)


@pytest.mark.parametrize(
    "model, prompt", [("openai/gpt-5.4", 300_000), ("openai/gpt-5.4", 100_000), ("gemini/gemini-2.5-pro", 250_000)]
)
def test_a_long_prompt_is_priced_as_litellm_prices_it(model, prompt):
    # past 272k (gpt-5.4) or 200k (Gemini 2.5 Pro) prompt tokens every token of the call costs more: the ledger, the
    # reservation and the estimate read the step, and agree with LiteLLM's own calculator (the attacker's case: a call
    # of 357k tokens recorded at half its price against a cost budget)
    import litellm

    provider, name = model.split("/")
    want = sum(
        litellm.cost_per_token(model=name, custom_llm_provider=provider, prompt_tokens=prompt, completion_tokens=2_000)
    )
    price = default_price(model)
    assert price.cost(prompt, 2_000) == pytest.approx(want, rel=1e-9)
    assert price.bound(prompt, 2_000) >= price.cost(prompt, 2_000)
    # summed over calls, the step is read at their mean prompt (the estimate's rows), not at the sum
    assert price.cost(3 * prompt, 6_000, calls=3) == pytest.approx(3 * want, rel=1e-9)
    usage = usage_of([CallInfo("generate", model, prompt, 2_000)] * 3, price)
    assert usage["cost_usd"] == pytest.approx(3 * want, rel=1e-9)


def test_a_long_prompt_on_the_flex_tier_is_priced_at_flex_s_step():
    price = default_price("openai/gpt-5.4")
    assert price.at("flex").cost(300_000, 0) == pytest.approx(300_000 * 2.5 / 1e6)  # the map's _above_272k_tokens_flex
    assert price.at("flex").cost(100_000, 0) == pytest.approx(100_000 * 1.25 / 1e6)
    assert price.scaled(0.5).cost(300_000, 0) == pytest.approx(300_000 * 2.5 / 1e6)  # the batch discount, on the step
    # a tier refed has no price for is never priced below the default tier, at the default's step too
    assert price.at("unstated").cost(300_000, 0) == pytest.approx(300_000 * 5.0 / 1e6)
    assert price.at("flex").dearer_than(price) == 1.0 and price.dearer_than(price.at("flex")) == pytest.approx(2.0)


def test_a_config_s_price_of_a_model_with_a_long_prompt_step_moves_the_step_with_it():
    own = resolve_price("openai/gpt-5.4", 1.25, None, 7.5)  # half the list's input and output prices
    assert own.cost(300_000, 1_000) == pytest.approx((300_000 * 2.5 + 1_000 * 11.25) / 1e6)


def test_hidden_reasoning_is_priced_at_its_own_rate_where_the_provider_has_one():
    # DashScope's qwen-plus thinks at $4/M against $1.2/M for its answer: 1,000 of 1,100 completion tokens reasoning
    price = default_price("dashscope/qwen-plus-2025-07-14")
    assert price.cost(500, 1_100, reasoning_tokens=1_000) == pytest.approx((500 * 0.4 + 100 * 1.2 + 1_000 * 4.0) / 1e6)
    assert price.bound(500, 1_100) == pytest.approx((500 * 0.4 + 1_100 * 4.0) / 1e6)  # every output token may think
    calls = [CallInfo("respond", "m", 500, 1_100, reasoning_tokens=1_000)] * 2
    assert usage_of(calls, price)["cost_usd"] == pytest.approx(2 * price.cost(500, 1_100, reasoning_tokens=1_000))
    assert default_price("openai/o4-mini").reasoning is None  # where none is listed, reasoning is output


def test_a_search_model_s_fee_per_request_is_priced_with_every_call():
    # a search model charges per request whatever its tokens, by a search context size refed does not choose: the
    # dearest; a model whose search is a tool it may be asked for (Gemini's grounding) is not charged it
    sonar = default_price("perplexity/sonar")
    assert sonar.per_call == 0.012 and sonar.cost(1_000, 100) == pytest.approx(1_100 * 1.0 / 1e6 + 0.012)
    assert sonar.cost(2_000, 200, calls=2) == pytest.approx(2 * sonar.cost(1_000, 100))
    assert sonar.bound(1_000, 100) >= 0.012
    assert default_price("openai/gpt-4o-search-preview").per_call == 0.025
    assert default_price("gemini/gemini-2.5-pro").per_call == 0.0
    # a deep-research model searches as often as it likes within one request: no price holds for its calls, so a
    # cost budget is refused for it unless the config prices it
    assert default_price("perplexity/sonar-deep-research") is None and default_price("openai/o3-deep-research") is None
    assert usage_of([CallInfo("generate", "m", 1_000, 100)] * 3, sonar)["cost_usd"] == pytest.approx(
        3 * sonar.cost(1_000, 100)
    )


def test_a_tier_s_long_prompt_step_is_never_below_its_own_short_prompt_price():
    # gpt-5.5's priority tier lists no step of its own: the default tier's step (10 / 45) was taken as is, below the
    # priority tier's own 12.5 / 75, so a long priority call was priced, and reserved, below a short one (a review)
    price = resolve_price("openai/gpt-5.5", None, None, None, tier="priority")
    short, long = price.cost(271_999, 50_000) / 271_999, price.cost(300_000, 50_000) / 300_000
    assert long > short
    assert price.bound(300_000, 50_000) >= price.cost(300_000, 50_000)


@pytest.mark.parametrize("model", ["dashscope/qwen-plus-latest", "dashscope/qwen3-max"])
def test_a_model_priced_by_the_prompt_s_range_is_priced_as_litellm_prices_it(model):
    # these have no plain keys: qwen-plus-latest fell through to the undated qwen-plus, losing its 256k step and its
    # reasoning price (2.9x under at a short prompt)
    import litellm

    provider, name = model.split("/")
    price = default_price(model)
    for prompt in (1_000, 300_000):
        want = sum(
            litellm.cost_per_token(
                model=name, custom_llm_provider=provider, prompt_tokens=prompt, completion_tokens=2_000
            )
        )
        assert price.cost(prompt, 2_000) == pytest.approx(want, rel=1e-9), prompt


def test_a_tier_s_reasoning_price_moves_with_its_output_price():
    flash = default_price("gemini/gemini-2.5-flash")
    assert flash.at("priority").reasoning == flash.at("priority").output > flash.reasoning


def test_a_config_s_cache_write_price_rises_on_a_long_prompt_step_as_the_input_does():
    own = resolve_price("openai/gpt-5.4", None, None, None, write_usd=2.5)  # the list has no write price for it
    assert own.cost(300_000, 0, written_tokens=300_000) == pytest.approx(own.cost(300_000, 0))  # 5.0 a 1M both
