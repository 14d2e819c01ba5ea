"""Service tiers end to end, on loopback servers that answer tiers as OpenAI does: each reply names the tier that
served it, and a share of flex requests find no capacity (429 resource_unavailable, not billed). The proof of every
cost is the servers' own token counts at the list price of the tier."""

from __future__ import annotations

import json

import pytest
from cli_helpers import lines, sets
from conftest import run_overrides
from loopback_server import FLEX_UNAVAILABLE, read_log

from refed_dspy.cli import main
from refed_dspy.config import load_config
from refed_dspy.providers.prices import resolve_price
from refed_dspy.quality.judge import judge_run
from refed_dspy.quality.report import build_report
from refed_dspy.synthesis.api import synthesize

MINI = "openai/gpt-5-mini"  # LiteLLM prices it on the flex tier at half its default price
# a reasoning model: until its own defaults apply, the config sets what OpenAI accepts for it
REASONING = {"temperature": 1.0, "max_tokens": 16000}


def at_list_price(log: list[dict], tier: str) -> float:
    """What the answered requests of a server's log cost at `MINI`'s list price on `tier`."""
    price = resolve_price(MINI, None, None, None, tier=tier)
    return sum(
        price.cost(e["prompt_tokens"], e["completion_tokens"], e["cached_tokens"]) for e in log if e["status"] == 200
    )


def role(name: str, **fields) -> dict[str, object]:
    """--set overrides of one role's section."""
    values = {"model": f"'{MINI}'", **REASONING, **fields}
    return {f"{name}.{k}": v for k, v in values.items()}


def chat(log: list[dict]) -> list[dict]:
    return [e for e in log if "settings" in e]


def test_flex_on_both_roles_through_flex_unavailability_costs_the_flex_list_price(server_factory, tmp_path):
    """The issue's must-show: service_tier = "flex" on both roles, a server that answers 10% of flex requests 429
    resource unavailable: every sample made, every request on the flex tier, and each summary's cost within 2% of the
    server's tokens at the flex list price, half the default tier's."""
    teacher, judge = server_factory(flex_unavailable=0.1), server_factory(flex_unavailable=0.1)
    run = tmp_path / "run"
    overrides = run_overrides(
        teacher,
        run,
        30,
        **{"seeds.limit": 8, "synthesis.instructions_per_feature": 2},
        **role("teacher", service_tier="'flex'"),
        **role("judge", service_tier="'flex'", api_base=f"'{judge.api_base}'", api_key_env="''", num_retries=2),
    )
    config = load_config(None, overrides)
    summary = synthesize(config)
    judged = judge_run(run, config)

    assert summary["status"] == "complete" and summary["samples"] == 30 and len(lines(run / "samples.jsonl")) == 30
    assert judged["status"] == "complete"
    for srv, made in ((teacher, summary), (judge, judged)):
        log = chat(read_log(srv.cfg.log_path))
        unavailable = [e for e in log if e["status"] == 429]
        assert unavailable and all(e["fault"] == "resource_unavailable" for e in unavailable)  # 10% of them
        assert all(e["settings"].get("service_tier") == "flex" for e in log)  # every request on the flex tier
        assert {e["service_tier"] for e in log if e["status"] == 200} == {"flex"}
        paid = made["usage"]
        assert paid["by_tier"] == {"flex": paid["calls"]} and paid["tier_unavailable"] == len(unavailable)
        flex, default = at_list_price(log, "flex"), at_list_price(log, "default")
        assert flex == pytest.approx(default / 2, rel=1e-9)  # the flex list price: half the default tier's
        assert made["cost_usd"] == pytest.approx(flex, rel=0.02)
    said = (run / "summary.json").read_text()
    assert json.loads(said)["usage"]["by_tier"] == {"flex": summary["usage"]["calls"]}
    report = build_report(run)  # the report's money is the summaries', and it says which tier served the calls
    assert report["cost_usd"] == {"synthesis": summary["cost_usd"], "judge": judged["cost_usd"]}
    assert f"{summary['usage']['calls']} calls on flex" in report.text
    assert f"{judged['usage']['calls']} calls on flex" in report.text


def test_a_request_flex_has_no_capacity_for_falls_back_to_the_default_tier(server_factory, tmp_path):
    """flex_fallback = 2 on a server whose flex tier never has capacity: each request is answered twice 429, then sent
    on the default tier; the run completes at the default tier's price and the summary says so."""
    srv = server_factory(flex_unavailable=1.0)
    run = tmp_path / "run"
    fields = role("teacher", service_tier="'flex'", flex_fallback=2)
    summary = synthesize(
        load_config(
            None, run_overrides(srv, run, 6, **{"seeds.limit": 3, "synthesis.instructions_per_feature": 1}, **fields)
        )
    )
    log = chat(read_log(srv.cfg.log_path))
    answered = [e for e in log if e["status"] == 200]
    assert summary["status"] == "complete" and summary["samples"] == 6
    assert {e["settings"].get("service_tier") for e in answered} == {"default"}
    assert len(log) - len(answered) == 2 * len(answered)  # two flex answers of no capacity before each
    paid = summary["usage"]
    assert paid["flex_fallbacks"] == paid["calls"] == len(answered) and paid["by_tier"] == {"default": paid["calls"]}
    assert summary["cost_usd"] == pytest.approx(at_list_price(log, "default"), rel=1e-6)
    ledger = [x for x in lines(run / "ledger.jsonl") if "t" in x]
    assert ledger and all(x["v"] == "default" and x["fb"] == 1 for x in ledger)  # recorded per call


@pytest.mark.parametrize(("asked", "served"), [("flex", "default"), ("priority", "default"), ("flex", "scale")])
def test_a_call_served_on_another_tier_than_asked_is_priced_where_it_was_served(
    server_factory, tmp_path, asked, served
):
    srv = server_factory(served_tier=served)
    run = tmp_path / "run"
    fields = role("teacher", service_tier=f"'{asked}'")
    summary = synthesize(
        load_config(
            None, run_overrides(srv, run, 4, **{"seeds.limit": 2, "synthesis.instructions_per_feature": 1}, **fields)
        )
    )
    log = chat(read_log(srv.cfg.log_path))
    assert {e["settings"]["service_tier"] for e in log} == {asked}
    assert summary["usage"]["by_tier"] == {served: summary["usage"]["calls"]}
    # a tier refed has no price for ("scale") costs the dearer of the tier asked for and the default
    priced_at = served if served != "scale" else "default"
    assert summary["cost_usd"] == pytest.approx(at_list_price(log, priced_at), rel=1e-6)
    assert [x["v"] for x in lines(run / "ledger.jsonl") if "t" in x] == [served] * summary["usage"]["calls"]


def test_the_tier_a_reply_names_no_tier_for_is_priced_never_below_the_default(server_factory, tmp_path, monkeypatch):
    """A server that names no tier in its replies (a server of one's own): a flex request is priced at the dearer of
    the flex and the default tier, and the summary says why."""
    import loopback_server

    srv = server_factory()
    send = loopback_server._Handler._send

    def without_tier(self, status, payload, headers=None):
        payload.pop("service_tier", None)
        return send(self, status, payload, headers)

    monkeypatch.setattr(loopback_server._Handler, "_send", without_tier)
    run = tmp_path / "run"
    fields = role("teacher", service_tier="'flex'")
    summary = synthesize(
        load_config(
            None, run_overrides(srv, run, 4, **{"seeds.limit": 2, "synthesis.instructions_per_feature": 1}, **fields)
        )
    )
    log = chat(read_log(srv.cfg.log_path))
    assert summary["usage"]["by_tier"] == {"unstated": summary["usage"]["calls"]}
    assert summary["cost_usd"] == pytest.approx(at_list_price(log, "default"), rel=1e-6)


def test_flex_found_without_capacity_too_long_is_retried_by_the_engine_and_never_aborts(
    server_factory, tmp_path, monkeypatch
):
    """The call boundary stops waiting at once (TIER_WAITS = 0): every 429 resource unavailable reaches the engine,
    which retries the work and never counts it toward max_consecutive_failures (1 here: any counted failure aborts)."""
    from refed_dspy.clients import boundary

    monkeypatch.setattr(boundary, "TIER_WAITS", 0)
    srv = server_factory(flex_unavailable=0.2)
    run = tmp_path / "run"
    fields = role("teacher", service_tier="'flex'", num_retries=8)
    summary = synthesize(
        load_config(
            None,
            run_overrides(
                srv,
                run,
                8,
                **{"seeds.limit": 3, "synthesis.instructions_per_feature": 1, "synthesis.max_consecutive_failures": 1},
                **fields,
            ),
        )
    )
    log = chat(read_log(srv.cfg.log_path))
    assert summary["status"] == "complete" and summary["samples"] == 8
    assert any(e["status"] == 429 for e in log)
    assert summary["retries"]["this_invocation"].get("tier_unavailable", 0) > 0
    assert summary["cost_usd"] == pytest.approx(at_list_price(log, "flex"), rel=1e-6)


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"teacher.service_tier": "'flex'"}, "teacher: 'openai/gpt-4o-mini' offers no flex tier"),
        (
            {"teacher.model": "'anthropic/claude-haiku-4-5'", "teacher.service_tier": "'priority'"},
            "teacher: Anthropic has no priority tier refed can ask for",
        ),
        (
            {**role("teacher", service_tier="'flex'"), "synthesis.mode": "'batch'"},
            'teacher.service_tier = "flex" is for online calls; batch mode has a price of its own',
        ),
    ],
)
def test_a_tier_that_cannot_be_had_is_one_line_and_exit_2_before_any_call(
    server_factory, tmp_path, capsys, fields, said
):
    srv = server_factory()
    run = tmp_path / "run"
    code = main(["synthesize", "--quiet", *sets(run_overrides(srv, run, 4, **fields))])
    err = capsys.readouterr().err.strip()
    assert code == 2 and said in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert chat(read_log(srv.cfg.log_path)) == []  # no request reached the server
    assert not (run / "samples.jsonl").exists()


def test_the_estimate_prices_online_flex_and_batch_side_by_side(tmp_path, capsys):
    overrides = [f"{k}={v}" for k, v in {**role("teacher", service_tier="'flex'"), "synthesis.size": 1000}.items()]
    code = main(["estimate", "--json", "--no-save", *sets([*overrides, f"run.dir='{tmp_path / 'run'}'"])])
    assert code == 0
    e = json.loads(capsys.readouterr().out)
    total = e["total"]
    assert e["service_tier"] == "flex" and e["tiers"] == ["flex"]
    assert total["flex_cost_usd"] == pytest.approx(total["cost_usd"] / 2, rel=1e-3)  # the flex list price
    assert total["batch_cost_usd"] == pytest.approx(total["cost_usd"] * 0.5, rel=1e-3)
    wall = e["wall"]
    assert wall["online_s"] < wall["flex_s"] < wall["batch_s"] < wall["batch_max_s"]
    assert wall["stages"] == len(e["stages"]) == 4  # feedback, instructions, responses, improvements: a chain
    main(["estimate", "--no-save", *sets([*overrides, f"run.dir='{tmp_path / 'run'}'"])])
    table = capsys.readouterr().out
    assert "online        flex       batch" in table and "wall time: online about" in table
    assert "the config asks for the flex tier" in table


def test_the_loopback_server_answers_tiers_as_openai_does(server_factory):
    import urllib.error
    import urllib.request

    srv = server_factory(flex_unavailable=1.0)

    def ask(tier: str | None) -> tuple[int, dict]:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        if tier is not None:
            body["service_tier"] = tier
        request = urllib.request.Request(
            f"{srv.api_base}/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    assert ask(None)[1]["service_tier"] == "default" and ask("priority")[1]["service_tier"] == "priority"
    status, body = ask("flex")
    assert (
        status == 429
        and body["error"]["code"] == "resource_unavailable"
        and body["error"]["message"] == FLEX_UNAVAILABLE
    )


def test_a_cost_budget_reserves_and_spends_at_the_tier_asked_for(server_factory, tmp_path):
    """A cost budget of three quarters of what 40 samples cost on the default tier: on the default tier the budget
    stops the run short; on flex, where every call is reserved and spent at half the price, all 40 samples are made
    within it. Each run's cost is the server's tokens at its tier's list price."""

    def fields(tier: str, budget: float | None) -> dict:
        out = {
            **role("teacher", service_tier=f"'{tier}'"),
            "seeds.limit": 8,
            "synthesis.instructions_per_feature": 2,
            "synthesis.concurrency": 4,
        }
        return {**out, "synthesis.max_cost_usd": budget} if budget is not None else out

    srv = server_factory()
    whole = synthesize(load_config(None, run_overrides(srv, tmp_path / "whole", 40, **fields("default", None))))
    assert whole["samples"] == 40
    budget = round(0.75 * whole["cost_usd"], 6)
    made = {}
    for tier in ("default", "flex"):
        srv = server_factory()
        run = tmp_path / tier
        summary = synthesize(load_config(None, run_overrides(srv, run, 40, **fields(tier, budget))))
        spent = at_list_price(chat(read_log(srv.cfg.log_path)), tier)
        assert summary["cost_usd"] == pytest.approx(spent, rel=1e-6) and spent <= budget
        made[tier] = (summary["status"], summary["samples"])
    assert made["flex"] == ("complete", 40)
    assert made["default"][0] == "budget" and made["default"][1] < 40


def test_a_cost_budget_holds_on_a_project_that_serves_priority_unasked(server_factory, tmp_path):
    """An OpenAI project may serve every request naming no tier on the priority tier (its settings say so): an
    attacker's run of gpt-5-mini under $0.30 billed $0.358, each call bounded at the default tier's price. refed's own
    LM names the default tier where its model has a dearer one, so such a project serves it there; a user's LM that
    names none is served on priority, priced there, and bounded at the dearest tier its provider could serve it on:
    within the budget by the server's count either way."""
    import dspy

    budget, made = 0.07, {}
    for own in (True, False):
        srv = server_factory(project_tier="priority", latency_s=0.2)
        more = {"seeds.limit": 4, "synthesis.concurrency": 8, "synthesis.max_cost_usd": budget, **role("teacher")}
        config = load_config(None, run_overrides(srv, tmp_path / f"run-{own}", 40, **more))
        users = dspy.LM(MINI, api_base=srv.api_base, api_key="unused", temperature=1.0, max_tokens=16000)
        summary = synthesize(config, teacher=None if own else users)
        log = chat(read_log(srv.cfg.log_path))
        served = "default" if own else "priority"
        assert {e["settings"].get("service_tier") for e in log} == {"default" if own else None}
        assert summary["status"] == "budget" and summary["usage"]["by_tier"] == {served: summary["usage"]["calls"]}
        billed = at_list_price(log, served)
        assert summary["cost_usd"] == pytest.approx(billed, rel=1e-6)
        assert billed <= budget, (own, billed, len(log))
        made[own] = summary["samples"]
    assert made[True] > made[False] > 0  # the default tier's price buys more
