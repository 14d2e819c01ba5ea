"""A program judged on the experiment's held-out test examples, and (the synthesis check) the synthesis run it drives
on the test references, judged; what each spends goes into the experiment's ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dspy

from refed_dspy.adapters import build_adapter
from refed_dspy.clients.boundary import bounded
from refed_dspy.clients.lm import build_lm
from refed_dspy.config import Config
from refed_dspy.config.lm import price_of
from refed_dspy.experiments.config import example_key
from refed_dspy.experiments.plan import ExperimentPlan
from refed_dspy.experiments.spend import BudgetStop, experiment_limits, left_to_spend, lesser, total_of
from refed_dspy.ledger.budget import CallBudget
from refed_dspy.optimizers.compile import evaluate_detailed
from refed_dspy.optimizers.metrics import make_metric
from refed_dspy.quality.judge import judge_run
from refed_dspy.runtime.sync import run_sync
from refed_dspy.store.cache import use_run_cache
from refed_dspy.store.jsonl import read_jsonl
from refed_dspy.store.rundir import RunDir
from refed_dspy.synthesis.api import arun_synthesis
from refed_dspy.synthesis.provenance import with_lm_of


def score(
    plan: ExperimentPlan, cfg: Config, program: dspy.Module, test: list[dspy.Example], key: str, part: str
) -> dict[str, Any]:
    """Judge `program` (run with `cfg`'s LMs, or those handed in) on the test examples: per-example scores (by example
    key), with each example's reference, their mean, and the calls paid (recorded as `part` of the experiment's
    spending; BudgetStop when judging them all would pass what the experiment may still spend). The judging of a
    baseline and of its cells shares one run cache (`evals/<key>`, the baseline's key)."""
    spend, teacher, judge = plan.spend, plan.teacher, plan.judge
    use_run_cache(RunDir(plan.out / "evals" / key))
    calls_from, cost_from = experiment_limits(spend.ledger, "the judging of the test examples")
    budget = CallBudget(*left_to_spend(spend.ledger, part), calls_from=calls_from, cost_from=cost_from)
    t = bounded(teacher if teacher is not None else build_lm(cfg.teacher, "teacher"), "teacher", fresh=True)
    j = bounded(judge if judge is not None else build_lm(cfg.judge, "judge"), "judge", fresh=True)
    cfg = with_lm_of(with_lm_of(cfg, "teacher", t), "judge", j) if teacher is not None or judge is not None else cfg
    t.attach_budget(budget, "teacher", price_of(cfg.teacher))
    j.attach_budget(budget, "judge", price_of(cfg.judge))
    metric = make_metric(cfg, cfg.optimize.target, judge=j)
    with spend.live(part, budget):
        try:
            mean, rows, errors = evaluate_detailed(
                program, test, metric, t, cfg.optimize.num_threads, adapter=build_adapter(cfg.teacher)
            )
        except KeyboardInterrupt:  # a signal: the calls in flight reached the provider, and are paid
            budget.close("the experiment was stopped by a signal")
            raise
    if budget.tripped:  # a refused call scored its example 0: the mean would be wrong, so there is none
        raise BudgetStop(f"judging the test examples stopped: {budget.tripped}", budget.as_dict())
    return {
        "mean": mean,
        "n": len(rows),
        "scores": {example_key(ex): value for ex, _, value in rows},
        "groups": {example_key(ex): str(ex.get("reference_id") or example_key(ex)) for ex, _, _ in rows},
        "program_failures": sum(1 for _, pred, _ in rows if pred is None),
        "judge_failures": metric.failure_summary()["failed"],
        "last_error": errors[-1] if errors else None,
        "usage": budget.as_dict(),
    }


def synthesis_check(plan: ExperimentPlan, cfg: Config, program: str | None, run_dir: Path, part: str) -> dict[str, Any]:
    """A synthesis run of experiment.synthesize samples on the test references driven by `program` (a program.json;
    None: the built-in one), judged: its judged mean, each sample's judged score, and what it cost (recorded as `part`
    of the experiment's spending; BudgetStop past what the experiment may still spend)."""
    references, size = plan.check
    spend, teacher, judge = plan.spend, plan.teacher, plan.judge
    data = cfg.model_dump(mode="json")
    data["run"]["dir"] = str(run_dir)
    data["synthesis"].update(size=size, program=program, mode="online")
    data["judging"]["mode"] = "online"
    data["tracking"]["enabled"] = False
    calls, cost = left_to_spend(spend.ledger, part)
    data["synthesis"]["max_calls"] = lesser(cfg.synthesis.max_calls, calls)
    data["synthesis"]["max_cost_usd"] = lesser(cfg.synthesis.max_cost_usd, cost)
    syn_config = Config.model_validate(data)
    summary = run_sync(arun_synthesis(syn_config, teacher=teacher, references=references, on_mismatch="error"))
    spent = summary.get("usage") or {}
    spend.set_total(f"{part}:synthesize", spent, "teacher")
    if summary.get("status") == "budget":
        raise BudgetStop(f"the synthesis check into {run_dir} stopped at the experiment's budget", spent)
    calls, cost = left_to_spend(spend.ledger, part)
    data["judging"]["max_calls"] = lesser(cfg.judging.max_calls, calls)
    data["judging"]["max_cost_usd"] = lesser(cfg.judging.max_cost_usd, cost)
    judged = judge_run(run_dir, Config.model_validate(data), judge=judge)
    spend.set_total(f"{part}:judge", judged.get("usage"), "judge")
    usage = total_of([spent, judged.get("usage") or {}])
    if judged.get("status") == "budget":
        raise BudgetStop(f"judging the synthesis check in {run_dir} stopped at the experiment's budget", usage)
    rd = RunDir(run_dir)
    scores = [float(row["pointwise"]["overall"]) for row in read_jsonl(rd.judgments) if row.get("pointwise")]
    return {"mean": judged.get("mean_score"), "samples": summary.get("samples"), "scores": scores, "usage": usage}
