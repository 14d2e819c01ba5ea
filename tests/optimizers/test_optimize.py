"""`refed optimize` end to end on the loopback stand-in (it answers any signature): every optimizer,
the call budget, program files, `--program`, and MLflow (sqlite store and a real `mlflow server`)."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import dspy
import pytest
from cli_helpers import refed as _popen
from cli_helpers import sets
from conftest import run_overrides
from loopback_server import read_log

from refed_dspy.config import load_config
from refed_dspy.methods import METHODS
from refed_dspy.optimizers.compile import OptimizationStopped
from refed_dspy.optimizers.run import optimize
from refed_dspy.programs.saved import load_program
from refed_dspy.registry import OPTIMIZERS
from refed_dspy.synthesis.api import synthesize
from refed_dspy.view.status.run import run_dir_status


def refed(*args, cwd=None) -> tuple[int, str, str]:
    """Run the `refed` CLI in a subprocess; (exit code, stdout, stderr)."""
    proc = _popen(*args, cwd=cwd)
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out, err


MARKER = "ZEBRA-7 rule: answer in exactly three numbered steps."


def opt_overrides(srv, tmp_path, optimizer="bootstrap", **extra) -> list[str]:
    out = run_overrides(srv, tmp_path / "run", 10) + [
        f"judge.api_base='{srv.api_base}'",
        "judge.api_key_env=''",
        f"optimize.optimizer='{optimizer}'",
        "optimize.n_train=4",
        "optimize.n_val=3",
        "optimize.num_threads=2",
        "judging.criteria=['helpfulness','accuracy']",
    ]
    return out + [f"{k}={v}" for k, v in extra.items()]


# each optimizer the project offers, at a budget CI can afford (2-5 s each on the stand-in)
BUDGETS = {
    "bootstrap": {},
    "bootstrap_random_search": {"optimize.num_candidates": 1},
    "miprov2": {"optimize.auto": "'light'"},
    "gepa": {"optimize.max_metric_calls": 24},
    "simba": {"optimize.bsize": 4, "optimize.max_steps": 1, "optimize.num_candidates": 2},
}


def test_every_optimizer_offered_has_its_effect_tested():
    assert set(BUDGETS) == set(OPTIMIZERS), "give a new optimizer a CI-sized budget in BUDGETS"


@pytest.mark.parametrize("optimizer", sorted(BUDGETS))
def test_each_optimizer_beats_the_uncompiled_program_on_the_stand_in(server_factory, tmp_path, optimizer):
    """The stand-in in signal mode (tests/loopback_server.py): a program whose prompts carry demonstrations, or
    instructions its optimizer's proposer wrote, makes answers the judge scores 10; the uncompiled program's are
    drawn from 1-10. Each optimizer must hand back a program that keeps what it found: one that compiled and then
    gave back its starting instructions and demos scores as the uncompiled program did."""
    srv = server_factory(signal=True, signal_bonus=9)
    # the rubric's score alone; one thread, so that the judge's draws for the uncompiled program come in one order (two
    # threads sharing the server took them in the order their requests arrived: above 0.75 about once in a hundred)
    extra = {"optimize.win_weight": 0, "optimize.n_val": 4, "optimize.num_threads": 1, **BUDGETS[optimizer]}
    result = optimize(load_config(None, opt_overrides(srv, tmp_path, optimizer, **extra)))
    assert result.score_after >= result.score_before + 0.25, (result.score_before, result.score_after)
    out = tmp_path / "run" / "optimize"
    assert result.out_dir == out and result.n_train and result.n_val
    state = json.loads((out / "program.json").read_text())
    assert {"generate", "improve", "refed"} <= set(state)
    meta = state["refed"]
    assert meta["optimizer"] == optimizer and meta["config"]["optimize"]["optimizer"] == optimizer
    assert meta["config"]["teacher"]["api_base"] == srv.api_base  # the resolved config travels with the program
    assert meta["score_before"] == result.score_before and meta["score_after"] == result.score_after
    assert 0 <= result.score_before <= 1 and 0 <= result.score_after <= 1
    assert all(0 <= s <= 1 for s in result.steps)
    if optimizer in ("miprov2", "gepa", "bootstrap_random_search"):
        assert result.steps  # per-step scores the optimizer reports
    if optimizer == "gepa":  # its state, kept to continue from after a kill, in a folder named for this compile
        (state_dir,) = (out / "state").iterdir()
        assert state_dir.name.startswith("gepa-") and (state_dir / "gepa_state.bin").exists()
    summary = json.loads((out / "optimize_summary.json").read_text())
    examples_calls = summary["examples_usage"]["calls"]
    # every request the server saw is accounted: the examples run, then teacher + judge, all on the command's ledger
    assert len(read_log(srv.cfg.log_path)) == result.usage["calls"] and 0 < examples_calls < result.usage["calls"]
    assert summary["this_invocation"]["calls"] == result.usage["calls"]
    assert set(result.usage["by_role"]) == {"teacher", "judge"}
    assert (out / "instructions.txt").read_text().startswith("## generate")
    assert "Before" in (out / "before_after.md").read_text()
    # plain DSPy loads the saved state too
    from refed_dspy.programs import RespondAndImprove

    plain = RespondAndImprove()
    plain.load(str(out / "program.json"))
    assert plain.generate.signature.instructions == result.program.generate.signature.instructions


def test_call_budget_stops_the_optimization_without_saving(server_factory, tmp_path):
    srv = server_factory()
    cfg = load_config(None, opt_overrides(srv, tmp_path, "miprov2", **{"optimize.max_calls": 40}))
    with pytest.raises(OptimizationStopped, match="LM-call budget of 40"):
        optimize(cfg)
    out = tmp_path / "run" / "optimize"
    examples_calls = json.loads((out / "examples" / "summary.json").read_text())["usage"]["calls"]
    assert len(read_log(srv.cfg.log_path)) - examples_calls <= 40
    assert not (out / "program.json").exists()
    code, _, err = refed("optimize", *sets(opt_overrides(srv, tmp_path, "miprov2")), "--set", "optimize.max_calls=40")
    assert code == 1 and "LM-call budget of 40" in err and "Traceback" not in err  # finished short at its budget
    # said once, by the optimization: not again by DSPy for each example left unscored (whole examples, hundreds of
    # lines in a trial)
    assert err.count("budget of 40 is reached") == 1 and "Error for Example" not in err, err[-3000:]


def _bill(srv, config) -> tuple[int, float, float]:
    """(requests, what they cost at list price, the dearest one) as the server saw them."""
    from refed_dspy.config.lm import price_of

    price = price_of(config.teacher)
    costs = [
        price.cost(e["prompt_tokens"], e["completion_tokens"], e.get("cached_tokens", 0))
        for e in read_log(srv.cfg.log_path)
        if "prompt_tokens" in e
    ]
    return len(read_log(srv.cfg.log_path)), sum(costs), max(costs, default=0.0)


@pytest.mark.parametrize(
    "cap, held",
    [("optimize.max_cost_usd=0.02", "cost budget of $0.02"), ("optimize.max_calls=60", "LM-call budget of 60")],
    ids=["cost", "calls"],
)
def test_a_cap_holds_for_the_whole_command_across_its_invocations(server_factory, tmp_path, cap, held):
    """`refed optimize` three times with one cap, its examples synthesized by itself (n_train + n_val = 30): the
    examples' calls count against the cap, and each invocation starts from what the ones before spent. Before, one
    invocation billed 2.9x the cost cap, and three took 236 requests under max_calls = 60."""
    srv = server_factory()
    over = opt_overrides(srv, tmp_path, **{"optimize.n_train": 20, "optimize.n_val": 10, "synthesis.concurrency": 4})
    said = [refed("optimize", *sets(over), "--set", cap) for _ in range(3)]
    assert [code for code, _, _ in said] == [1, 1, 1], said[0][2][-2000:]
    stops = [next(line for line in err.splitlines() if held in line) for _, _, err in said]
    assert all("the command has spent" in line and "this invocation" in line for line in stops), stops
    config = load_config(None, over)
    requests, cost, dearest = _bill(srv, config)
    summary = json.loads((tmp_path / "run" / "optimize" / "optimize_summary.json").read_text())
    assert summary["status"] == "budget" and summary["this_invocation"]["calls"] == 0  # the third paid nothing
    # `refed status` of the optimization says what the command paid, its judge and compiling too (it said its
    # examples' calls alone)
    status = run_dir_status(tmp_path / "run" / "optimize")
    assert (status.calls, status.cost_usd) == (summary["usage"]["calls"], summary["usage"]["cost_usd"])
    # and that a budget stopped it, to be raised (it said "stopped; run the same command to resume", which stops again)
    assert status.state == "budget", status.state
    if cap.startswith("optimize.max_cost_usd"):
        assert cost <= 0.02 + dearest, (cost, dearest)
        assert summary["usage"]["cost_usd"] == pytest.approx(cost, rel=1e-6)
        # the examples made again from scratch under a raised cap: what they cost anew counts, the first ones too
        code, _, err = refed("optimize", *sets(over), "--set", "optimize.max_cost_usd=0.03", "--fresh")
        assert code in (0, 1), err[-2000:]
        _, cost, dearest = _bill(srv, config)
        assert cost <= 0.03 + dearest, (cost, dearest)
    else:
        assert requests <= 60 + 4  # the examples synthesis's calls in flight at most
        assert summary["usage"]["calls"] == requests


def test_cost_budget_needs_prices(server_factory, tmp_path):
    srv = server_factory()
    code, _, err = refed(
        "optimize",
        *sets(opt_overrides(srv, tmp_path)),
        "--set",
        "judge.model='openai/unpriced-x'",
        "--set",
        "optimize.max_cost_usd=1",
    )
    assert code == 2 and "needs a price for the judge" in err


def _program_with_marker(tmp_path, srv) -> Path:
    """A compiled program (bootstrap on the stand-in) whose generate instructions carry MARKER."""
    result = optimize(
        load_config(None, opt_overrides(srv, tmp_path, **{"optimize.out": f"'{tmp_path / 'opt-marked'}'"}))
    )
    state = json.loads(result.program_path.read_text())
    state["generate"]["signature"]["instructions"] = MARKER
    path = tmp_path / "marked.json"
    path.write_text(json.dumps(state))
    return path


def test_synthesize_with_program_uses_its_instructions(server_factory, tmp_path):
    srv = server_factory(log_prompts=True)
    mipro = optimize(load_config(None, opt_overrides(srv, tmp_path, "miprov2")))
    marked = _program_with_marker(tmp_path, srv)
    hashes = {}
    for name, program, expect in (
        ("mipro", mipro.program_path, mipro.program.generate.signature.instructions),
        ("marked", marked, MARKER),
    ):
        syn = server_factory(log_prompts=True)
        code, out, err = refed(
            "synthesize", "--program", str(program), *sets(run_overrides(syn, tmp_path / f"syn-{name}", 6))
        )
        assert code == 0, err
        log = read_log(syn.cfg.log_path)
        generate = [e for e in log if e["outputs"] == ["response"]]
        # DSPy indents the instructions in the system prompt: compare with whitespace collapsed
        assert len(generate) >= 6 and all(" ".join(expect.split()) in " ".join(e["system"].split()) for e in generate)
        samples = [json.loads(x) for x in (tmp_path / f"syn-{name}" / "samples.jsonl").read_text().splitlines()]
        assert len(samples) == 6
        assert {s["meta"]["program"] for s in samples} == {str(Path(program).resolve())}
        hashes[name] = {s["meta"]["program_hash"] for s in samples}
        assert len(hashes[name]) == 1 and next(iter(hashes[name])).startswith("sha256:")
        summary = json.loads((tmp_path / f"syn-{name}" / "summary.json").read_text())
        assert {summary["program_hash"]} == hashes[name]
    assert hashes["mipro"] != hashes["marked"]  # the content decides, not the file name
    # a run made with another program is another run: resuming it with the built-in prompts is refused
    code, _, err = refed("synthesize", *sets(run_overrides(syn, tmp_path / "syn-marked", 6)))
    assert code == 2 and "synthesis.program" in err


def test_program_errors_are_one_line(server_factory, tmp_path):
    srv = server_factory()
    args = sets(run_overrides(srv, tmp_path / "r", 2))
    code, _, err = refed("synthesize", "--program", str(tmp_path / "nope.json"), *args)
    assert code == 2 and "no such file" in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, _, err = refed("synthesize", "--program", str(bad), *args)
    assert code == 2 and "not a readable program state" in err
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"something": {}}))
    code, _, err = refed("synthesize", "--program", str(other), *args)
    assert code == 2 and "holds no state" in err
    code, _, err = refed("synthesize", "--program", str(other), *args, "--set", "synthesis.method='reflection'")
    assert code == 2 and "holds no state for the predictors of ReflectionTuning" in err
    # a per-instruction program given to a method that has no such predictor: its tuning would be lost, so refused
    respond_only = tmp_path / "respond.json"
    from refed_dspy.programs import RespondAndImprove

    respond_only.write_text(json.dumps(RespondAndImprove().dump_state(), default=str))
    for method in ("reflection", "no_feedback"):
        code, _, err = refed(
            "synthesize", "--program", str(respond_only), *args, "--set", f"synthesis.method='{method}'"
        )
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert "holds predictor" in err and "compiled for another method" in err
    assert not (tmp_path / "r" / "samples.jsonl").exists()
    code, _, err = refed("optimize", "--set", "optimize.optimizer='sgd'")
    assert code == 2 and "optimize.optimizer" in err
    assert not (tmp_path / "r" / "samples.jsonl").exists()


@contextlib.contextmanager
def keep_active_model_env(monkeypatch):
    """An API key in the environment (the loopback ignores it) and MLflow's active model restored afterwards."""
    from refed_dspy.tracking.mlflow_runs import keep_active_model

    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    with keep_active_model():
        yield
    monkeypatch.delenv("OPENAI_API_KEY")


def _mlflow_checks(uri: str, result, srv, tmp_path, monkeypatch, planted: str | None = None) -> None:
    import mlflow

    client = mlflow.MlflowClient(uri)
    run = client.get_run(result.mlflow_run_id)
    assert run.data.params["config.optimize.optimizer"] == "bootstrap"
    assert run.data.params["teacher_model"] == "openai/gpt-4o-mini"
    assert run.data.metrics["score_before"] == result.score_before
    assert run.data.metrics["score_after"] == result.score_after
    # the figures people compare as metrics (it was every leaf of the usage: 100+), the stages as a table
    assert run.data.metrics["calls"] == result.usage["calls"] and "calls.judge" in run.data.metrics
    assert not [k for k in run.data.metrics if "by_stage" in k] and len(run.data.metrics) < 20
    names = {a.path for a in client.list_artifacts(result.mlflow_run_id)}
    assert {"program.json", "instructions.txt", "before_after.md", "config.toml", "optimize_summary.json"} <= names
    assert "usage_by_stage.json" in names
    # one logged model (autolog's per-candidate models off), scores on one 0-1 scale, one tag scheme
    models = [
        m
        for m in client.search_logged_models(experiment_ids=[run.info.experiment_id])
        if m.source_run_id == result.mlflow_run_id
    ]
    assert [m.name for m in models] == ["program"]
    assert not {k for k in run.data.metrics if k.startswith("eval")}
    assert all(0 <= v <= 1 for k, v in run.data.metrics.items() if "score" in k)
    assert run.data.tags["refed.kind"] == "optimize"
    mlflow.set_tracking_uri(uri)
    info = mlflow.models.get_model_info(result.model_uri)
    assert info.signature is not None and {i.name for i in info.signature.inputs} >= {
        "instruction",
        "reference_instruction",
    }
    assert info.saved_input_example_info is not None
    # loaded as a pyfunc it predicts with the key from the environment (none was logged)
    with keep_active_model_env(monkeypatch):
        pyfunc = mlflow.pyfunc.load_model(result.model_uri)
        pred = pyfunc.predict(
            {
                "reference_instruction": "Ref?",
                "reference_response": "Ref.",
                "instruction": "Explain tides.",
                "feedback": "Be concrete.",
            }
        )
    assert pred["improved_response"]
    from refed_dspy.tracking.mlflow_runs import keep_active_model

    for model_uri in (result.model_uri, f"runs:/{result.mlflow_run_id}/program"):
        with keep_active_model():
            loaded = mlflow.dspy.load_model(model_uri)
        assert loaded.generate.signature.instructions == result.program.generate.signature.instructions
        teacher = dspy.LM("openai/loopback", api_base=srv.api_base, api_key="unused", cache=False)
        with dspy.context(lm=teacher):
            pred = loaded(
                reference_instruction="Ref?",
                reference_response="Ref.",
                instruction="Explain tides.",
                feedback="Be concrete.",
            )
        assert pred.improved_response
        program, identity = load_program(model_uri, METHODS.get("refed"), uri)
        assert (
            identity == model_uri
            and program.respond.improve.signature.instructions == result.program.improve.signature.instructions
        )


def test_mlflow_round_trip_on_a_sqlite_store(server_factory, tmp_path, monkeypatch):
    srv = server_factory()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)  # the sqlite store keeps artifacts under ./mlruns
    result = optimize(
        load_config(
            None, opt_overrides(srv, tmp_path, **{"tracking.enabled": "true", "tracking.mlflow_uri": f"'{uri}'"})
        )
    )
    assert result.mlflow_run_id and result.model_uri
    _mlflow_checks(uri, result, srv, tmp_path, monkeypatch)
    # synthesis with the logged program, from its runs:/ URI
    syn = tmp_path / "syn"
    code, _, err = refed(
        "synthesize",
        "--program",
        f"runs:/{result.mlflow_run_id}/program",
        *sets(run_overrides(srv, syn, 4)),
        "--set",
        "tracking.enabled=true",
        "--set",
        f"tracking.mlflow_uri='{uri}'",
        cwd=tmp_path,
    )
    assert code == 0, err
    samples = [json.loads(x) for x in (syn / "samples.jsonl").read_text().splitlines()]
    assert {s["meta"]["program"] for s in samples} == {f"runs:/{result.mlflow_run_id}/program"}
    # tracking off: the URI still resolves against tracking.mlflow_uri (from another directory; nothing made there)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    program_sets = ["--program", f"runs:/{result.mlflow_run_id}/program", "--set", "tracking.enabled=false"]
    code, _, err = refed(
        "synthesize",
        *program_sets,
        *sets(run_overrides(srv, tmp_path / "untracked", 2)),
        "--set",
        f"tracking.mlflow_uri='{uri}'",
        cwd=elsewhere,
    )
    assert code == 0, err
    assert (
        json.loads((tmp_path / "untracked" / "summary.json").read_text())["program_hash"]
        == (samples[0]["meta"]["program_hash"])
    )
    # a store that is not there: one line, exit 2, and the look-up creates no store
    missing = tmp_path / "no-such" / "mlflow.db"
    for store in (f"sqlite:///{missing}", "sqlite:///mlflow.db"):
        code, _, err = refed(
            "synthesize",
            *program_sets,
            *sets(run_overrides(srv, tmp_path / "never", 2)),
            "--set",
            f"tracking.mlflow_uri='{store}'",
            cwd=elsewhere,
        )
        assert code == 2 and "no MLflow store at" in err and len(err.strip().splitlines()) == 1, err
    assert not missing.parent.exists() and list(elsewhere.iterdir()) == []
    # twice from Python in one process, by URI (loading it used to dspy.configure from the first run's task)
    for name in ("py1", "py2"):
        summary = synthesize(
            load_config(
                None,
                run_overrides(
                    srv,
                    tmp_path / name,
                    2,
                    **{
                        "synthesis.program": f"'runs:/{result.mlflow_run_id}/program'",
                        "tracking.enabled": "true",
                        "tracking.mlflow_uri": f"'{uri}'",
                    },
                ),
            )
        )
        assert summary["samples"] == 2 and summary["program_hash"] == samples[0]["meta"]["program_hash"]


def test_mlflow_round_trip_against_a_real_mlflow_server(server_factory, tmp_path, mlflow_server, monkeypatch):
    srv = server_factory()
    monkeypatch.chdir(tmp_path)
    result = optimize(
        load_config(
            None,
            opt_overrides(srv, tmp_path, **{"tracking.enabled": "true", "tracking.mlflow_uri": f"'{mlflow_server}'"}),
        )
    )
    assert not (tmp_path / "mlruns").exists()  # everything went to the server
    _mlflow_checks(mlflow_server, result, srv, tmp_path, monkeypatch)


def test_the_examples_synthesis_says_it_is_the_optimization_s(server_factory, tmp_path):
    """From Python a newcomer read `synthesize: 0/6 samples` (their run was of 4): the lines of the optimization's
    examples now say whose synthesis it is."""
    srv = server_factory(latency_s=0.05)
    over = opt_overrides(srv, tmp_path, **{"run.progress": "true", "run.progress_every_s": 0.01})
    code, _, err = refed("optimize", *sets(over))
    assert code == 0, err[-3000:]
    assert re.search(r"^optimize: its examples: synthesize", err, re.M), err[-3000:]
