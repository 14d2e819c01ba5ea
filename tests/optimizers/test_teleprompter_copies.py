"""The LMs a teleprompter copies are on the ledger: MIPROv2's proposer calls a copy of its prompt_model
(`prompt_model.copy(rollout_id=..., temperature=...)`); when that prompt_model is an LM the user built with
`refed_dspy.build_lm` (behind the call boundary already, but on no ledger of the run), the copy's calls were counted
nowhere. The python.md guide's MIPROv2 case, against the loopback server: the summary's calls and prompt tokens must
be the server's, and `optimize.max_calls` below the need must stop it at that many calls."""

from __future__ import annotations

import json

import dspy
import pytest
from conftest import run_overrides
from loopback_server import read_log

import refed_dspy
from refed_dspy.config import load_config
from refed_dspy.optimizers import OptimizationStopped
from refed_dspy.programs import RespondAndImprove

INPUTS = ("reference_instruction", "reference_response", "instruction", "feedback")
TOPICS = [
    "tides",
    "rainbows",
    "volcanoes",
    "eclipses",
    "glaciers",
    "earthquakes",
    "auroras",
    "monsoons",
    "fossils",
    "comets",
    "coral reefs",
    "deserts",
]


def examples() -> list[dspy.Example]:
    return [
        dspy.Example(
            reference_instruction="Explain photosynthesis.",
            reference_response="Plants turn light, water and air into sugar.",
            instruction=f"Explain {topic} to a ten-year-old.",
            feedback="Use one concrete example.",
        ).with_inputs(*INPUTS)
        for topic in TOPICS
    ]


def concise(gold, pred, trace=None):
    words = len((pred.get("improved_response") or pred.response or "").split())
    score = 1.0 if 20 <= words <= 200 else 0.3
    return score >= 0.5 if trace is not None else score


def config(srv, tmp_path, max_calls: int):
    over = run_overrides(
        srv,
        tmp_path / "run",
        4,
        **{
            "judge.api_base": "'http://127.0.0.1:9/v1'",  # a user's metric: the config's judge is never called
            "judge.api_key_env": "''",
            "optimize.out": f"'{tmp_path / 'opt'}'",
            "optimize.num_threads": 1,
            "optimize.max_calls": max_calls,
        },
    )
    return load_config(None, over)


def mipro_of(cfg):
    """The guide's MIPROv2 case: the teacher made by build_lm, as the teleprompter's prompt and task model."""
    teacher = refed_dspy.build_lm(cfg.teacher, "teacher")
    tp = dspy.MIPROv2(metric=concise, auto="light", prompt_model=teacher, task_model=teacher, num_threads=1)
    return teacher, tp


def served(srv) -> list[dict]:
    return [e for e in read_log(srv.cfg.log_path) if e.get("status") == 200]


def test_a_build_lm_teacher_as_mipro_prompt_model_is_counted_whole(server_factory, tmp_path, caplog):
    srv = server_factory()
    cfg = config(srv, tmp_path, 2000)
    teacher, tp = mipro_of(cfg)
    trainset = examples()
    result = refed_dspy.optimize(
        cfg,
        teacher=teacher,
        program=RespondAndImprove(),
        trainset=trainset[:8],
        valset=trainset[8:],
        metric=concise,
        optimizer=tp,
    )
    summary = json.loads((tmp_path / "opt" / "optimize_summary.json").read_text())
    answered = served(srv)
    assert summary["usage"]["calls"] == len(answered) == result.usage["calls"]
    assert summary["usage"]["prompt_tokens"] == sum(e["prompt_tokens"] for e in answered)
    assert summary["usage"]["by_stage"].get("propose", {}).get("calls", 0) > 0  # the proposer's copies, counted
    assert not summary["usage"].get("unmetered_calls")
    # every reply reported its usage: no warning says otherwise (one said the teacher's tokens were not counted)
    assert not [r for r in caplog.records if r.levelname == "WARNING" and r.name.startswith("refed_dspy")]


def test_max_calls_below_the_need_stops_the_copies_too(server_factory, tmp_path):
    srv = server_factory()
    limit = 30
    cfg = config(srv, tmp_path, limit)
    teacher, tp = mipro_of(cfg)
    trainset = examples()
    with pytest.raises(OptimizationStopped) as stopped:
        refed_dspy.optimize(
            cfg,
            teacher=teacher,
            program=RespondAndImprove(),
            trainset=trainset[:8],
            valset=trainset[8:],
            metric=concise,
            optimizer=tp,
        )
    assert len(served(srv)) <= limit
    assert stopped.value.usage["calls"] == len(served(srv))
    # stopped by its budget: `refed optimize` exits 1 (finished short), not 3 (aborted by the provider or machine)
    assert "LM-call budget of 30" in stopped.value.budget_stop and stopped.value.exit_code == 1
