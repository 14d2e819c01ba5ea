"""Service tiers without a server: the list prices of each tier, the user's own, which model offers which tier, what a
section sends, and how a call is priced and counted by the tier that served it."""

from __future__ import annotations

import pytest
from dspy.utils.exceptions import LMRateLimitError

from refed_dspy.clients.calls import CallInfo
from refed_dspy.clients.lm import build_lm
from refed_dspy.config import load_config
from refed_dspy.config.lm import LMSpec, PriceBook, price_of
from refed_dspy.engine.failures import Failure, FailureStreak, classify
from refed_dspy.errors import ConfigError
from refed_dspy.ledger.usage import Totals, tier_text, usage_of
from refed_dspy.providers.prices import Price, default_price, resolve_price

MINI = "openai/gpt-5-mini"  # LiteLLM prices it on default, flex and priority
REASONING = {"teacher.model": f"'{MINI}'", "teacher.temperature": 1.0, "teacher.max_tokens": 16000}


def sets(**kv) -> list[str]:
    return [f"{k}={v}" for k, v in kv.items()]


def test_a_tier_is_priced_at_its_own_list_price_and_knows_the_others():
    default = default_price(MINI)
    flex = resolve_price(MINI, None, None, None, tier="flex")
    priority = resolve_price(MINI, None, None, None, tier="priority")
    assert default == Price(0.25, 0.025, 2.0) and default.tier == "default"
    assert flex == Price(0.125, 0.0125, 1.0, tier="flex")  # half the default tier's
    assert priority == Price(0.45, 0.045, 3.6, tier="priority")
    assert default.tiers == ("default", "flex", "priority")
    assert default.at("flex") == flex and flex.at("default") == default and flex.at("priority") == priority
    assert flex.at("flex") is flex and flex.at(None) is flex
    # a reply naming a tier no price is known for: never below the tier asked for nor the default, part by part
    assert flex.at("unstated") == Price(0.25, 0.025, 2.0, tier="unstated") and priority.at("scale") == Price(
        0.45, 0.045, 3.6, tier="scale"
    )
    assert default.scaled(0.5).at("flex") == Price(0.0625, 0.00625, 0.5, tier="flex")
    assert flex.at("default").dearer_than(flex) == 2.0 and flex.dearer_than(default) == 1.0
    # a model the map prices on no flex tier
    assert resolve_price("openai/gpt-4o-mini", None, None, None, tier="flex") is None


def test_own_tier_prices_from_the_section_and_from_the_prices_table():
    own = {"teacher.model": "'openai/my-model'", "teacher.service_tier": "'flex'"}
    config = load_config(
        None,
        sets(
            **own,
            **{"teacher.input_usd_per_mtok": 1.0, "teacher.output_usd_per_mtok": 4.0},
            **{"teacher.tier_prices.flex.input_usd_per_mtok": 0.4, "teacher.tier_prices.flex.output_usd_per_mtok": 1.6},
        ),
    )
    price = price_of(config.teacher)
    assert price == Price(0.4, 0.4, 1.6, tier="flex") and price.at("default") == Price(1.0, 1.0, 4.0)
    table = {
        'prices."openai/my-model".input_usd_per_mtok': 1.0,
        'prices."openai/my-model".output_usd_per_mtok': 4.0,
        'prices."openai/my-model".tier_prices.flex.input_usd_per_mtok': 0.3,
        'prices."openai/my-model".tier_prices.flex.output_usd_per_mtok': 1.2,
    }
    config = load_config(None, sets(**own, **table))
    assert price_of(config.teacher) == Price(0.3, 0.3, 1.2, tier="flex")
    assert PriceBook(config.prices).of("openai/my-model").at("flex") == Price(0.3, 0.3, 1.2, tier="flex")
    # the section's own price for a tier wins over the table's, part by part as for the default tier
    mixed = load_config(None, sets(**own, **table, **{"teacher.tier_prices.flex.output_usd_per_mtok": 2.0}))
    assert price_of(mixed.teacher) == Price(0.3, 0.3, 2.0, tier="flex")
    # the list's flex price, under the user's own default price
    listed = load_config(None, sets(**REASONING, **{"teacher.service_tier": "'flex'", "teacher.input_usd_per_mtok": 9}))
    assert price_of(listed.teacher) == Price(0.125, 0.0125, 1.0, tier="flex")
    assert price_of(listed.teacher).at("default") == Price(9.0, 9.0, 2.0)


@pytest.mark.parametrize(
    ("overrides", "said"),
    [
        (
            {"teacher.service_tier": "'flex'"},  # gpt-4o-mini: default and priority prices, no flex
            "teacher: 'openai/gpt-4o-mini' offers no flex tier (LiteLLM's price map knows its default, priority prices)",
        ),
        (
            {"judge.model": "'openai/my-model'", "judge.service_tier": "'priority'"},
            "judge: 'openai/my-model' offers no priority tier",
        ),
        (
            {"teacher.model": "'anthropic/claude-haiku-4-5'", "teacher.service_tier": "'flex'"},
            "teacher: Anthropic has no flex tier refed can ask for",
        ),
    ],
)
def test_a_tier_the_model_does_not_offer_is_one_line(overrides, said):
    with pytest.raises(ConfigError) as err:
        load_config(None, sets(**overrides))
    message = str(err.value)
    assert said in message and "\n" not in message
    role = next(iter(overrides)).split(".")[0]
    assert f'set {role}.service_tier = "default"' in message
    # an LM section made in Python, which no config validated, is refused when its LM is built
    spec = LMSpec.model_construct(**{**LMSpec().model_dump(), "service_tier": "flex"})
    with pytest.raises(ConfigError, match="offers no flex tier"):
        build_lm(spec, "judge")


def test_a_section_sends_its_tier_and_waits_longer_on_flex():
    default = load_config(None, sets(**REASONING)).teacher
    # the default by name, where the model has a dearer tier a project could serve a request naming none on
    assert default.lm_kwargs()["service_tier"] == "default" and default.lm_kwargs()["timeout"] == 120.0
    own = load_config(None, sets(**{"teacher.model": "'openai/our-own-teacher'"})).teacher
    assert "service_tier" not in own.lm_kwargs()  # a server with no tiers is sent no such field
    flex = load_config(None, sets(**REASONING, **{"teacher.service_tier": "'flex'"})).teacher
    assert flex.lm_kwargs()["service_tier"] == "flex" and flex.lm_kwargs()["timeout"] == 600.0
    here = flex.model_copy(update={"api_base": "http://127.0.0.1:9/v1", "api_key_env": ""})  # built, never called
    assert build_lm(here).kwargs["service_tier"] == "flex"
    chosen = load_config(None, sets(**REASONING, **{"teacher.service_tier": "'flex'", "teacher.timeout": 90})).teacher
    assert chosen.lm_kwargs()["timeout"] == 90.0
    with pytest.raises(ConfigError, match="set teacher.service_tier instead"):
        load_config(None, sets(**REASONING, **{"teacher.extra.service_tier": "'flex'"}))


def test_each_call_is_priced_at_the_tier_that_served_it():
    flex = resolve_price(MINI, None, None, None, tier="flex")
    calls = [
        CallInfo("generate", MINI, 1000, 100, service_tier="flex"),
        CallInfo("generate", MINI, 1000, 100, service_tier="default", fallback=True),  # a flex request fell back
        CallInfo("improve", MINI, 1000, 100, service_tier="unstated"),  # asked flex, the reply named no tier
        CallInfo("improve", MINI, error="LMRateLimitError", tier_unavailable=True),
    ]
    usage = usage_of(calls, flex)
    at = {t: flex.at(t).cost(1000, 100) for t in ("flex", "default")}
    assert usage["cost_usd"] == pytest.approx(at["flex"] + 2 * at["default"])
    assert usage["by_tier"] == {"flex": 1, "default": 1, "unstated": 1}
    assert usage["tier_unavailable"] == 1 and usage["flex_fallbacks"] == 1 and usage["failed_calls"] == 1
    assert usage["by_stage"]["generate"]["cost_usd"] == pytest.approx(at["flex"] + at["default"])
    totals = Totals()
    totals.add(usage)
    totals.add(usage)
    assert totals.as_dict()["by_tier"] == {"flex": 2, "default": 2, "unstated": 2}
    assert totals.as_dict()["tier_unavailable"] == 2 and totals.cost == pytest.approx(2 * usage["cost_usd"])
    said = tier_text(usage)
    assert said.startswith("1 calls on flex, 1 on default, each priced at the list price of the tier that served it")
    assert "1 whose reply named no tier" in said and "1 requests found no capacity" in said
    # a run on the default tier says nothing of tiers, and its usage carries no new keys
    plain = usage_of([CallInfo("generate", MINI, 10, 10)], flex.at("default"))
    assert tier_text(plain) is None and "by_tier" not in plain and "tier_unavailable" not in plain


def test_a_tier_without_capacity_is_told_from_a_rate_limit():
    from refed_dspy.providers.registry import provider_for

    tiers = provider_for(MINI).tiers
    said = "Resource unavailable: try again later (resource_unavailable)"
    assert tiers.unavailable(LMRateLimitError(said, model=MINI, status=429))
    assert tiers.unavailable(LMRateLimitError("busy", model=MINI, status=429, provider_code="resource_unavailable"))
    assert not tiers.unavailable(LMRateLimitError("Rate limit reached (rate_limit_exceeded)", model=MINI, status=429))
    assert not tiers.unavailable(LMRateLimitError(said, model=MINI, status=503))
    assert provider_for("anthropic/claude-haiku-4-5").tiers is None


def test_no_capacity_on_a_tier_never_counts_toward_the_abort():
    err = LMRateLimitError("Resource unavailable (resource_unavailable)", model=MINI, status=429)
    err.tier_unavailable = True  # as the call boundary marks it, once it stops waiting
    failure = classify(err)
    assert failure.reason == "tier_unavailable" and failure.retryable and not failure.counted
    streak = FailureStreak(2)
    rate_limited = Failure("rate_limited", "429", final=False, retryable=True)
    assert streak.note(rate_limited) is None
    for _ in range(10):
        assert streak.note(failure) is None
    assert streak.note(rate_limited).reason == "too_many_failures"


def test_an_lm_handed_in_asking_for_a_tier_is_described_and_priced_so():
    import dspy

    from refed_dspy.synthesis.program import with_lm_of

    lm = dspy.LM(MINI, temperature=1.0, max_tokens=16000, service_tier="flex")
    config = with_lm_of(load_config(None, []), "teacher", lm)
    assert config.teacher.service_tier == "flex" and config.teacher.model == MINI
    assert price_of(config.teacher) == resolve_price(MINI, None, None, None, tier="flex")


def test_a_request_sent_on_a_dearer_tier_is_reserved_at_that_tiers_price():
    """A flex request falling back to the default tier costs up to twice what a flex call is reserved at: the engine's
    task ledger and a budget of an LM's own reserve it so, prompt counted or not."""
    from refed_dspy.ledger.budget import CallBudget
    from refed_dspy.ledger.tickets import TaskLedger

    flex = resolve_price(MINI, None, None, None, tier="flex")
    for counted in (None, 3000):
        budget = CallBudget(max_cost_usd=10.0 if counted else None)
        task = TaskLedger(budget, flex, 1000, "teacher", None, reserved=0.0)
        usual = task.open_call("teacher", MINI, "generate", None, 1000, counted)
        fallback = task.open_call("teacher", MINI, "generate", None, 1000, counted, tier="default")
        assert fallback.cost == pytest.approx(2 * usual.cost)
        own = budget.open_call("teacher", MINI, "generate", flex, 1000, counted)
        own_fallback = budget.open_call("teacher", MINI, "generate", flex, 1000, counted, tier="default")
        assert own_fallback.cost == pytest.approx(2 * own.cost)
        assert task.open_call("teacher", MINI, "generate", None, 1000, counted, tier="flex").cost == usual.cost


def test_a_call_naming_no_tier_is_bounded_at_the_tier_its_provider_may_serve_it_on():
    """A request naming no tier may be served on a dearer one (an OpenAI project set to priority, which may still serve
    some on the default): it is reserved at the dearest tier its model has a price on, whatever replies said. A request
    naming its tier is reserved at that tier's."""
    from refed_dspy.ledger.budget import CallBudget
    from refed_dspy.ledger.tickets import settle_call

    default = resolve_price(MINI, None, None, None)
    priority = default.at("priority")
    assert default.dearest_tier == "priority" and priority.dearest_tier is None
    budget = CallBudget(max_cost_usd=10.0)

    def reserved(tier=None):
        ticket = budget.open_call("teacher", MINI, "generate", default, 1000, 3000, tier=tier)
        return ticket, ticket.cost

    first, unasked = reserved()
    named = reserved("default")[1]
    assert unasked == pytest.approx(named * priority.dearer_than(default)) and unasked > named
    for served in ("default", "priority", "default"):
        settle_call(budget, first, CallInfo("generate", MINI, 3000, 200, service_tier=served), default)
        first, after = reserved()
        assert after == pytest.approx(unasked, rel=0.2) and after > reserved("default")[1]


@pytest.mark.parametrize(
    "model, named",
    [
        (MINI, "default"),  # OpenAI: a project may serve a request naming none on priority
        ("azure/gpt-4.1", None),  # Azure names no project tier, and LiteLLM refuses the field for this model
        ("azure/gpt-5-mini", None),
        ("gemini-2.5-flash", None),  # a bare name LiteLLM sends to Vertex AI
        ("openai/our-own-teacher", None),  # no dearer tier priced
    ],
)
def test_a_role_on_the_default_tier_names_it_only_where_a_project_could_serve_another(model, named):
    spec = load_config(None, sets(**{"teacher.model": f"'{model}'"})).teacher
    assert spec.lm_kwargs().get("service_tier") == named
