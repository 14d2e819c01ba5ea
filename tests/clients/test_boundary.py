"""One call boundary for every LM: an LM built from config, a user's `dspy.LM`, a subclass of it and a user's own
`dspy.BaseLM` are counted, priced, budgeted and checked alike, in synthesis, judging, meta-evaluation and
optimization, and what they report equals what the provider (the loopback server) answered."""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace

import dspy
import httpx
import pytest
from conftest import run_overrides
from dspy.utils.exceptions import LMTimeoutError
from loopback_server import read_log

import refed_dspy
from refed_dspy.clients.boundary import CallBoundary, lm_class_of
from refed_dspy.clients.calls import collect_calls, stage
from refed_dspy.clients.lm import bounded
from refed_dspy.config import load_config
from refed_dspy.config.lm import price_of
from refed_dspy.errors import ConfigError
from refed_dspy.quality.judge import judge_run
from refed_dspy.synthesis.api import synthesize
from refed_dspy.synthesis.summary import format_summary

# DSPy 3.4 deprecates BaseLM.forward for custom LMs, and still supports it: users' LMs are written that way
pytestmark = pytest.mark.filterwarnings("ignore:Implementing custom LMs through BaseLM.forward:DeprecationWarning")
MODEL = "openai/gpt-4o-mini"  # in LiteLLM's price map: every kind of LM is priced from it


class SubclassedLM(dspy.LM):
    """A user's subclass of dspy.LM, as people write them (here: one that counts its calls)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.my_calls = 0

    def forward(self, *args, **kwargs):
        self.my_calls += 1
        return super().forward(*args, **kwargs)

    async def aforward(self, *args, **kwargs):
        self.my_calls += 1
        return await super().aforward(*args, **kwargs)


class OwnClientLM(dspy.BaseLM):
    """A user's own BaseLM: its own HTTP client, an OpenAI-shaped response (the BaseLM contract of DSPy 3.4)."""

    def __init__(self, model: str, api_base: str, **kwargs):
        super().__init__(model, **kwargs)
        self.api_base = api_base

    def _body(self, prompt=None, messages=None, **kwargs) -> dict:
        settings = {**self.kwargs, **kwargs}
        messages = messages or [{"role": "user", "content": prompt}]
        body = {"model": self.model.split("/", 1)[-1], "messages": messages}
        for name in ("temperature", "max_tokens", "response_format"):
            if settings.get(name) is not None:
                body[name] = settings[name]
        return body

    @staticmethod
    def _response(data: dict):
        choices = [
            SimpleNamespace(
                index=c["index"],
                finish_reason=c["finish_reason"],
                message=SimpleNamespace(content=c["message"]["content"], tool_calls=None),
            )
            for c in data["choices"]
        ]
        return SimpleNamespace(choices=choices, usage=data["usage"], model=data["model"])

    def forward(self, prompt=None, messages=None, **kwargs):
        reply = httpx.post(f"{self.api_base}/chat/completions", json=self._body(prompt, messages, **kwargs), timeout=30)
        reply.raise_for_status()
        return self._response(reply.json())

    async def aforward(self, prompt=None, messages=None, **kwargs):
        async with httpx.AsyncClient(timeout=30) as client:
            reply = await client.post(f"{self.api_base}/chat/completions", json=self._body(prompt, messages, **kwargs))
        reply.raise_for_status()
        return self._response(reply.json())


def user_lm(kind: str, srv, **settings):
    """The teacher or judge a user hands in, of each kind; None: the one the config builds."""
    settings = {"temperature": 0.7, "max_tokens": 4000, **settings}
    if kind == "config":
        return None
    if kind == "dspy.LM":
        return dspy.LM(MODEL, api_base=srv.api_base, api_key="unused", num_retries=2, **settings)
    if kind == "subclass":
        return SubclassedLM(MODEL, api_base=srv.api_base, api_key="unused", num_retries=2, **settings)
    return OwnClientLM(MODEL, srv.api_base, num_retries=0, **settings)


def answered(srv) -> dict[str, int]:
    """What the server answered and bills: its 200 replies and their tokens."""
    ok = [e for e in read_log(srv.cfg.log_path) if e.get("status") == 200]
    return {
        "calls": len(ok),
        "prompt_tokens": sum(e["prompt_tokens"] for e in ok),
        "completion_tokens": sum(e["completion_tokens"] for e in ok),
        "cached_tokens": sum(e["cached_tokens"] for e in ok),
    }


def billed_part(usage: dict) -> dict[str, int]:
    return {k: usage[k] for k in ("calls", "prompt_tokens", "completion_tokens", "cached_tokens")}


KINDS = ["config", "dspy.LM", "subclass", "own BaseLM"]


@pytest.mark.parametrize("kind", KINDS)
def test_synthesis_and_judging_count_every_kind_of_lm_as_the_server_does(server_factory, tmp_path, kind):
    teacher_srv, judge_srv = server_factory(), server_factory()
    run = tmp_path / "run"
    over = run_overrides(
        teacher_srv,
        run,
        6,
        **{
            "teacher.model": f"'{MODEL}'",
            "teacher.temperature": 0.7,
            "judge.model": f"'{MODEL}'",
            "judge.api_base": f"'{judge_srv.api_base}'",
            "judge.api_key_env": "''",
            "judge.num_retries": 2,
        },
    )
    config = load_config(None, over)
    summary = synthesize(config, teacher=user_lm(kind, teacher_srv))
    assert summary["samples"] == 6
    truth = answered(teacher_srv)
    assert truth["calls"] > 0
    assert billed_part(summary["usage"]) == truth
    price = price_of(config.teacher)
    assert summary["usage"]["cost_usd"] == pytest.approx(
        price.cost(truth["prompt_tokens"], truth["completion_tokens"], truth["cached_tokens"]), rel=1e-9
    )
    judged = judge_run(run, config, judge=user_lm(kind, judge_srv, temperature=0.0))
    truth = answered(judge_srv)
    assert judged["judged"] == 6 and truth["calls"] > 0
    assert billed_part(judged["usage"]) == truth
    assert judged["usage"]["cost_usd"] == pytest.approx(
        price.cost(truth["prompt_tokens"], truth["completion_tokens"], truth["cached_tokens"]), rel=1e-9
    )


@pytest.mark.parametrize("kind", KINDS)
def test_optimize_counts_every_kind_of_lm_as_the_server_does(server_factory, tmp_path, kind):
    teacher_srv, judge_srv = server_factory(), server_factory()
    over = run_overrides(
        teacher_srv,
        tmp_path / "run",
        4,
        **{
            "teacher.model": f"'{MODEL}'",
            "judge.model": f"'{MODEL}'",
            "judge.api_base": f"'{judge_srv.api_base}'",
            "judge.api_key_env": "''",
            "optimize.out": f"'{tmp_path / 'opt'}'",
            "optimize.optimizer": "'bootstrap'",
            "optimize.n_train": 2,
            "optimize.n_val": 2,
            "optimize.num_threads": 1,
        },
    )
    result = refed_dspy.optimize(
        load_config(None, over), teacher=user_lm(kind, teacher_srv), judge=user_lm(kind, judge_srv, temperature=0.0)
    )
    summary = json.loads((tmp_path / "opt" / "optimize_summary.json").read_text())
    examples = summary["examples_usage"]
    teacher_truth, judge_truth = answered(teacher_srv), answered(judge_srv)
    assert teacher_truth["calls"] >= examples["calls"] > 0 and judge_truth["calls"] > 0
    by_role = result.usage["by_role"]
    # the optimization ran the teacher through the boundary: its requests that repeat the examples synthesis's are
    # answered from the cache the two share (counted, not paid), the rest paid
    assert by_role["teacher"]["calls"] + by_role["teacher"]["cached_calls"] > 0
    # the examples synthesis (counted by the engine, then put on the command's ledger) and the optimization (by the
    # budget) make up what was answered
    assert by_role["teacher"]["calls"] == teacher_truth["calls"]
    assert by_role["teacher"]["prompt_tokens"] == teacher_truth["prompt_tokens"]
    assert by_role["judge"]["calls"] == judge_truth["calls"]
    assert by_role["judge"]["completion_tokens"] == judge_truth["completion_tokens"]
    assert result.usage["cost_usd"] > 0


@pytest.mark.parametrize("kind", ["config", "dspy.LM", "own BaseLM"])
def test_a_call_budget_stops_a_user_lm_as_it_stops_a_built_one(server_factory, tmp_path, kind):
    srv = server_factory()
    run = tmp_path / "run"
    over = run_overrides(srv, run, 40, **{"teacher.model": f"'{MODEL}'", "synthesis.max_calls": 12})
    summary = synthesize(load_config(None, over), teacher=user_lm(kind, srv))
    assert summary["status"] == "budget"
    assert summary["usage"]["calls"] == answered(srv)["calls"] <= 12


@pytest.mark.parametrize("kind", ["dspy.LM", "own BaseLM"])
def test_a_cost_budget_needs_a_price_for_a_user_lm_too(server_factory, tmp_path, kind):
    srv = server_factory()
    over = run_overrides(srv, tmp_path / "run", 4, **{"synthesis.max_cost_usd": 0.01})
    lm = user_lm(kind, srv)
    lm.model = "openai/a-model-with-no-price"
    with pytest.raises(ConfigError, match="synthesis.max_cost_usd needs a price for the teacher") as refused:
        synthesize(load_config(None, over), teacher=lm)
    assert read_log(srv.cfg.log_path) == []
    # the fix it names is the one that prices it (the section's prices hold for the section's model only)
    assert '[prices."openai/a-model-with-no-price"] input_usd_per_mtok' in str(refused.value)
    priced = [*over, 'prices."openai/a-model-with-no-price".input_usd_per_mtok=1.0']
    priced.append('prices."openai/a-model-with-no-price".output_usd_per_mtok=2.0')
    assert synthesize(load_config(None, priced), teacher=lm)["cost_usd"] > 0


@pytest.mark.parametrize("kind", ["dspy.LM", "own BaseLM"])
def test_a_truncated_reply_from_a_user_lm_is_rejected_as_truncated(server_factory, tmp_path, kind):
    srv = server_factory(sticky_length=1.0)
    run = tmp_path / "run"
    over = run_overrides(srv, run, 3, **{"teacher.model": f"'{MODEL}'", "synthesis.max_calls": 30})
    summary = synthesize(load_config(None, over), teacher=user_lm(kind, srv))
    assert summary["samples"] == 0
    assert summary["rejects"].get("truncated", 0) > 0
    assert summary["usage"]["calls"] == answered(srv)["calls"]


def test_the_lm_handed_in_is_left_as_it_was():
    mine = dspy.LM(MODEL, api_base="http://127.0.0.1:9/v1", api_key="unused")
    guarded = bounded(mine, "teacher")
    assert guarded is not mine and type(mine) is dspy.LM and isinstance(guarded, CallBoundary)
    assert isinstance(guarded, dspy.LM) and lm_class_of(guarded) is dspy.LM
    assert bounded(guarded, "teacher") is guarded  # once is enough
    assert type(bounded(dspy.LM(MODEL), "judge")) is type(guarded)  # one class per LM class
    # saved with a program, it loads as the user's own class
    assert guarded.dump_state()["_dspy_lm_class"] == "dspy.clients.lm.LM"
    with pytest.raises(ConfigError, match="teacher: expected a dspy.BaseLM"):
        bounded("openai/gpt-4o-mini", "teacher")


class SaysNothingLM(dspy.BaseLM):
    """A legacy LM with its own __call__: it never hands DSPy its reply, so no usage reaches update_history."""

    def __call__(self, prompt=None, messages=None, **kwargs):
        return ["hello"]


def test_a_call_that_reports_nothing_is_still_counted_and_said(caplog):
    lm = bounded(SaysNothingLM("my/model"), "teacher")
    with collect_calls() as calls, stage("synthesize"):
        assert lm("hi") == ["hello"] and lm("again") == ["hello"]
    assert [(c.stage, c.model, c.cache_hit, c.prompt_tokens) for c in calls] == [
        ("synthesize", "my/model", False, 0)
    ] * 2
    said = [r.getMessage() for r in caplog.records if "without reporting" in r.getMessage()]
    assert len(said) == 1 and "teacher" in said[0] and "my/model" in said[0]


class TimesOutLM(dspy.BaseLM):
    """An LM whose request goes out and is given up at the client's timeout (the provider may have answered it)."""

    def __call__(self, prompt=None, messages=None, **kwargs):
        raise LMTimeoutError("request timed out")


def test_a_call_given_up_at_the_timeout_is_counted_as_paid():
    """It reached the provider, which may have answered and billed it: a paid call of unknown tokens (as one cut off
    by a stop), in the ledger too; a request the provider refused (a 500) is a failed call, not paid."""
    from refed_dspy.ledger.budget import CallBudget
    from refed_dspy.ledger.usage import usage_of

    ledger = CallBudget(max_calls=10)
    lm = bounded(TimesOutLM("my/model"), "teacher").attach_budget(ledger, "teacher", None)
    with collect_calls() as calls, stage("generate"), pytest.raises(LMTimeoutError):
        lm("hi")
    assert [(c.stage, c.interrupted, c.error) for c in calls] == [("generate", True, None)]
    usage = usage_of(calls, None)
    assert (usage["calls"], usage["interrupted_calls"], usage["failed_calls"]) == (1, 1, 0)
    assert ledger.total_calls == 1 and ledger.reserved_calls == 0


def test_calls_cut_off_are_kept_against_the_cost_budget():
    """Their tokens are unknown, so each is kept at what one call is reserved at: a teacher whose every request times
    out stops at the cost budget (it once ran on, each given-up call priced at $0), and the summary says the bound."""
    from refed_dspy.clients.calls import CallInfo
    from refed_dspy.ledger.budget import BudgetExceeded, CallBudget
    from refed_dspy.providers.prices import Price

    # under a cost budget a call is reserved at its counted prompt ('hi': 6 tokens with its message's format) filling
    # max_tokens (1,000): $0.002006, so 4 fit in $0.01
    price = Price(1.0, 0.5, 2.0)
    ledger = CallBudget(max_cost_usd=0.01)
    lm = bounded(TimesOutLM("my/model", max_tokens=1000), "teacher").attach_budget(ledger, "teacher", price)
    refused = 0
    with collect_calls() as calls, stage("generate"):
        for _ in range(10):
            try:
                lm("hi")
            except LMTimeoutError:
                pass
            except BudgetExceeded:
                refused += 1
    assert (len(calls), refused) == (4, 6)
    assert ledger.totals.cost == 0 and ledger.totals.cost_bound == pytest.approx(4 * 0.002006)
    assert "up to $0.0080 in calls cut off" in ledger.tripped
    assert ledger.as_dict()["by_role"]["teacher"]["interrupted_cost_usd"] == pytest.approx(4 * 0.002006)

    # the engine's calls reach the ledger without a bound: it gives them what it last reserved one call at (before any
    # prompt is counted: 2,000 prompt tokens, the prior, filling 1,000: $0.004)
    engine = CallBudget(max_cost_usd=1.0)
    engine.try_reserve(3, 3 * engine.call_cost(price, 1000, "teacher"))
    usage = engine.record([CallInfo(stage="synthesize", model="m", interrupted=True)], price, "teacher")
    assert usage["interrupted_cost_usd"] == pytest.approx(0.004) and usage["cost_usd"] == 0
    # and a stop settles the boundary's calls in flight at what they reserved
    engine.try_reserve(2, 0.006, role="judge")
    engine.close("stopped")
    assert engine.totals.cost_bound == pytest.approx(0.004 + 0.006)
    assert engine.by_role["judge"].as_dict()["interrupted_calls"] == 2


class ThreadedLM(OwnClientLM):
    """A user's LM whose acall runs its own __call__ in a thread: the boundary is entered twice for one call."""

    async def acall(self, *args, **kwargs):
        return await asyncio.to_thread(self, *args, **kwargs)


def test_an_lm_calling_itself_is_one_call(server_factory, caplog):
    srv = server_factory()
    lm = bounded(ThreadedLM(MODEL, srv.api_base, cache=False), "teacher")
    with collect_calls() as calls, stage("generate"):
        asyncio.run(lm.acall("hello"))
    assert len(calls) == 1 and calls[0].prompt_tokens > 0 and len(read_log(srv.cfg.log_path)) == 1
    assert not [r for r in caplog.records if "without reporting" in r.getMessage()]


def test_a_fresh_copy_leaves_a_built_lm_as_it_was():
    from refed_dspy.clients.lm import build_lm
    from refed_dspy.config.lm import LMSpec

    built = build_lm(LMSpec(model=MODEL, api_base="http://127.0.0.1:9/v1", api_key_env=""), "teacher")
    twin = bounded(built, "judge", fresh=True)
    twin.attach_budget(object(), "judge", None)
    assert twin is not built and built.budget is None and built.role == "teacher" and twin.role == "judge"


class NoUsageLM(OwnClientLM):
    """A user's LM in front of a server that reports no token usage (some local servers, some proxies)."""

    @staticmethod
    def _response(data: dict):
        return OwnClientLM._response({**data, "usage": None})


def test_an_lm_that_reports_no_usage_is_counted_as_paid_and_stopped_by_a_call_budget(server_factory, tmp_path, caplog):
    srv = server_factory()
    over = run_overrides(srv, tmp_path / "run", 40, **{"teacher.model": f"'{MODEL}'", "synthesis.max_calls": 12})
    summary = synthesize(load_config(None, over), teacher=NoUsageLM(MODEL, srv.api_base, num_retries=0))
    assert summary["status"] == "budget"
    # not cache hits: every reply was paid, and the budget saw each one
    assert summary["usage"]["calls"] == summary["usage"]["unmetered_calls"] == answered(srv)["calls"] <= 12
    assert summary["usage"]["cached_calls"] == 0 and summary["usage"]["cost_usd"] is None
    said = [r.getMessage() for r in caplog.records if "reports no token usage" in r.getMessage()]
    assert len(said) == 1 and "teacher" in said[0]


def test_a_cost_budget_stops_at_the_first_reply_whose_cost_is_unknown(server_factory, tmp_path):
    srv = server_factory()
    over = run_overrides(
        srv,
        tmp_path / "run",
        40,
        **{"teacher.model": f"'{MODEL}'", "synthesis.max_cost_usd": 5, "synthesis.concurrency": 1},
    )
    summary = synthesize(load_config(None, over), teacher=NoUsageLM(MODEL, srv.api_base, num_retries=0))
    # the first piece of work is paid (its cost unknown); nothing is started after it
    assert summary["status"] == "budget" and summary["usage"]["calls"] == answered(srv)["calls"] <= 2
    assert "reports no token usage" in summary["budget_stop"] and summary["samples"] == 0
    assert "reports no token usage" in format_summary(summary)


def test_a_dspy_cache_hit_is_still_a_cache_hit(server_factory, tmp_path):
    srv = server_factory()
    lm = bounded(dspy.LM(MODEL, api_base=srv.api_base, api_key="unused"), "teacher")
    with collect_calls() as calls, stage("generate"):
        lm("the same question")
        lm("the same question")
    assert [(c.cache_hit, c.tokens_unknown) for c in calls] == [(False, False), (True, False)]
    assert len(read_log(srv.cfg.log_path)) == 1


def test_a_refused_call_leaves_the_boundary_in_force():
    from refed_dspy.ledger.budget import BudgetExceeded, CallBudget

    budget = CallBudget(max_calls=1)
    lm = bounded(SaysNothingLM("my/model"), "teacher", fresh=True).attach_budget(budget, "teacher", None)
    lm("one")
    for _ in range(3):  # each refusal is a refusal: none lets a call through unguarded
        with pytest.raises(BudgetExceeded, match="LM-call budget of 1"):
            lm("more")
    assert budget.total_calls == 1 and budget.refused == 3 and budget.reserved_calls == 0


def test_the_engine_and_optimize_keep_one_kind_of_ledger():
    """Optimize guards its LMs with the very class the engine reserves and records through."""
    from refed_dspy.engine.execution import Engine, Limits
    from refed_dspy.ledger.budget import CallBudget

    engine = Engine(stage=None, limits=Limits(concurrency=1, max_retries=0, worst_calls={"x": 2}, max_calls=3))
    assert type(engine.budget) is CallBudget
    first = engine.accounts.reserve("x", 1, None, final=True)
    assert (first.reserved_calls, first.reserved_cost) == (2, 0.0)
    assert engine.accounts.reserve("x", 1, None, final=True) is None  # 2 reserved + 2 more > 3
    assert engine.budget.reserved_calls == 2 and engine.budget.refused == 1


@pytest.mark.parametrize("kind", ["dspy.LM", "own BaseLM"])
def test_a_bounded_lm_pickles_and_copies_as_itself(server_factory, kind):
    import copy
    import pickle

    from refed_dspy.ledger.budget import CallBudget

    srv = server_factory()
    budget = CallBudget(max_calls=5)
    lm = bounded(user_lm(kind, srv), "judge").attach_budget(budget, "judge", None)
    for twin in (copy.copy(lm), copy.deepcopy(lm), lm.copy()):
        assert type(twin) is type(lm) and twin.budget is budget and twin.role == "judge"
    loaded = pickle.loads(pickle.dumps(lm))
    assert type(loaded) is type(lm) and lm_class_of(loaded) is lm_class_of(lm) and loaded.role == "judge"
    assert loaded.budget.max_calls == 5 and loaded.budget is not budget
    with collect_calls() as calls, stage("judge"):
        loaded("hello")
    assert len(calls) == 1 and calls[0].prompt_tokens > 0 and loaded.budget.total_calls == 1


def test_a_handed_in_dspy_lm_goes_on_engines_of_refed_s_where_dspy_s_own_client_serves_it():
    """A user's dspy.LM behind the boundary sends through refed's transport (each request checked as it leaves) with
    the endpoint, key and timeout it was given, in either spelling and engine name; a (deep) copy shares its engines,
    a pickle makes them again, a saved program holds it as on DSPy's client, without its key. What lm15 cannot carry
    (a `thinking` setting), and a subclass whose own forward makes the request, keep DSPy's engine; the user's object
    is left as it was."""
    import copy
    import pickle

    from refed_dspy.clients.destination import endpoint_of, key_of

    base, key = "http://127.0.0.1:9/v1", "sk-handed-in-0123456789"
    for told in ({"api_base": base}, {"base_url": base}, {"api_base": base, "engine": "lm15"}):
        users = dspy.LM("openai/x", api_key=key, timeout=7, **told)
        twin = bounded(users, "teacher")
        assert not isinstance(twin.engine, str) and twin.engine.config.base_urls == {"openai-chat": base}, told
        assert (endpoint_of(twin), key_of(twin), twin.client_reach) == (base, key, {"api_base": base, "timeout": 7})
        assert "api_key" not in twin.kwargs and users.kwargs["api_key"] == key and isinstance(users.engine, str)
        assert copy.deepcopy(twin).engine is twin.engine and twin.copy(temperature=0.5).engine is twin.engine
        loaded = pickle.loads(pickle.dumps(twin))
        assert loaded.engine is not twin.engine and loaded.engine.config.base_urls == twin.engine.config.base_urls
        saved = twin.dump_state()
        assert saved["api_base"] == base and saved["timeout"] == 7 and key not in json.dumps(saved)

    class OwnForward(dspy.LM):
        def forward(self, *args, **kwargs):
            return super().forward(*args, **kwargs)

    kept = [
        OwnForward("openai/x", api_base=base, api_key=key),
        dspy.LM("openai/x", api_base=base, api_key=key, thinking={"type": "enabled", "budget_tokens": 64}),
    ]
    for users in kept:
        assert bounded(users, "teacher").engine == "auto"


@pytest.mark.parametrize("fault", [{"fail_all": True}, {"rate_hang": 1.0, "hang_s": 0.6}])
def test_dspys_retries_of_a_request_are_made_and_counted_at_the_boundary(server_factory, fault):
    """A dspy.LM retries a failed request num_retries times inside one call, where no request of them was seen: the
    ledger kept one failed (or cut-off) call while the server saw three requests. The boundary makes those retries
    itself, so each request is counted (a 500 as a failed call, a timeout as a paid call cut off) and reserved."""
    from refed_dspy.ledger.budget import CallBudget

    srv = server_factory(**fault)
    # a timeout below the hang for the hung requests; a 500 on a busy machine may take longer than that to come back
    timeout = 0.3 if "rate_hang" in fault else 10
    mine = dspy.LM(MODEL, api_base=srv.api_base, api_key="unused", num_retries=2, timeout=timeout, cache=False)
    ledger = CallBudget(max_calls=10)
    lm = bounded(mine, "teacher").attach_budget(ledger, "teacher", None)
    with collect_calls() as calls, stage("generate"), pytest.raises(dspy.utils.exceptions.LMError):
        lm("hi")
    deadline = time.monotonic() + 10  # a hung request reaches the server's log when its hang ends
    while len(read_log(srv.cfg.log_path)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(calls) == len(read_log(srv.cfg.log_path)) == 3
    if "fail_all" in fault:
        assert all(c.error for c in calls) and ledger.total_calls == 0
    else:
        assert all(c.interrupted for c in calls) and ledger.total_calls == 3
    assert mine.num_retries == 2 and lm.dump_state()["num_retries"] == 2  # the user's LM, and what a save records
