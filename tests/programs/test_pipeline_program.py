"""The pipeline program from Python and the CLI: a compiled pipeline drives every stage, provenance of objects
passed in from Python, checks made before the first paid call, and sync entry points inside a running loop."""

import asyncio
import json

import dspy
import pytest
from cli_helpers import STAGE_OF, lines, marked_pipeline, marked_stages, sets
from cli_helpers import run_refed as refed
from conftest import run_overrides
from loopback_server import read_log

from refed_dspy.config import load_config
from refed_dspy.config.section import tomllib
from refed_dspy.errors import ConfigError, RunDirError
from refed_dspy.methods import METHODS
from refed_dspy.programs import ReferenceSynthesis, RespondAndImprove
from refed_dspy.synthesis.api import synthesize
from refed_dspy.synthesis.program import program_hash


def test_a_saved_pipeline_drives_every_stage(server_factory, tmp_path):
    srv = server_factory(log_prompts=True)
    program = marked_pipeline("A")
    path = tmp_path / "pipeline.json"
    program.save(str(path))  # plain DSPy's own save of the whole pipeline
    run = tmp_path / "run"
    code, _, err = refed(
        "synthesize",
        "--program",
        str(path),
        *sets(run_overrides(srv, run, 6, **{"synthesis.instructions_per_feature": 2})),
    )
    assert code == 0, err
    # every one of the five predictors ran with its compiled instructions
    assert marked_stages(read_log(srv.cfg.log_path), "A") == set(STAGE_OF.values())
    samples = lines(run / "samples.jsonl")
    assert len(samples) == 6
    assert {s["meta"]["program"] for s in samples} == {str(path.resolve())}
    assert {s["meta"]["program_hash"] for s in samples} == {program_hash(program)}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["program_hash"] == program_hash(program)
    assert json.loads((run / "fingerprint.json").read_text())["program_hash"] == program_hash(program)
    # the same pipeline object from Python: same content, same hash
    run2 = tmp_path / "run2"
    again = synthesize(load_config(None, run_overrides(srv, run2, 2)), program=marked_pipeline("A"))
    assert again["program_hash"] == program_hash(program)
    assert again["program"] == "python:refed_dspy.programs.synthesis.ReferenceSynthesis"
    assert tomllib.loads((run2 / "config.toml").read_text())["synthesis"]["program"] == again["program"]
    # a run made by another program is not continued by this one without being told
    code, _, err = refed(
        "synthesize",
        "--program",
        str(path),
        *sets(run_overrides(srv, tmp_path / "run", 8, **{"synthesis.instructions_per_feature": 2})),
    )
    assert code == 0, err
    other = tmp_path / "other.json"
    marked_pipeline("B").save(str(other))
    before = len(read_log(srv.cfg.log_path))
    code, _, err = refed(
        "synthesize",
        "--program",
        str(other),
        *sets(run_overrides(srv, tmp_path / "run", 10, **{"synthesis.instructions_per_feature": 2})),
    )
    assert code == 2 and "synthesis.program" in err and "--resume-anyway" in err
    # a Python program's run cannot be resumed from the CLI, which cannot build that object
    code, _, err = refed("synthesize", "--config", str(run2 / "config.toml"), "--set", "synthesis.size=3")
    assert code == 2 and "was passed from Python" in err and len(err.strip().splitlines()) == 1
    assert len(read_log(srv.cfg.log_path)) == before


def test_python_objects_are_part_of_provenance(server_factory, tmp_path):
    srv = server_factory()
    run = tmp_path / "run"
    other_model = dspy.LM(
        "openai/another-model", api_base=srv.api_base, api_key="unused", temperature=0.7, max_tokens=2000
    )
    summary = synthesize(load_config(None, run_overrides(srv, run, 4)), teacher=other_model)
    assert summary["teacher"] == "openai/another-model"
    assert {s["meta"]["teacher"] for s in lines(run / "samples.jsonl")} == {"openai/another-model"}
    recorded = tomllib.loads((run / "config.toml").read_text())["teacher"]
    assert (recorded["model"], recorded["temperature"], recorded["max_tokens"]) == ("openai/another-model", 0.7, 2000)
    # extended by the config's own teacher (another model): refused, the error names the Python value to override it
    with pytest.raises(
        RunDirError, match=r"teacher.model: 'openai/another-model' -> 'openai/gpt-4o-mini'.*on_mismatch=\"resume\""
    ):
        synthesize(load_config(None, run_overrides(srv, run, 6)))
    # a respond part passed from Python is fingerprinted by its content
    run2 = tmp_path / "run2"
    mine = RespondAndImprove()
    mine.generate.signature = mine.generate.signature.with_instructions("Answer like a patient tutor.")
    first = synthesize(load_config(None, run_overrides(srv, run2, 3)), respond=mine)
    assert first["program"].endswith("RespondAndImprove") and first["program_hash"] != program_hash(
        METHODS.get("refed").build_pipeline()
    )
    n_calls = len(read_log(srv.cfg.log_path))
    assert synthesize(load_config(None, run_overrides(srv, run2, 3)), respond=mine)["new_samples"] == 0
    assert len(read_log(srv.cfg.log_path)) == n_calls
    with pytest.raises(RunDirError, match="program content"):
        synthesize(load_config(None, run_overrides(srv, run2, 5)), respond=RespondAndImprove())
    with pytest.raises(RunDirError, match="synthesis.program"):  # nor by the built-in program
        synthesize(load_config(None, run_overrides(srv, run2, 5)))
    # two names for the program to run are one too many
    with pytest.raises(ConfigError, match="not both"):
        synthesize(load_config(None, run_overrides(srv, run2, 5)), respond=mine, program=ReferenceSynthesis())
    with pytest.raises(ConfigError, match="both name the program"):
        synthesize(load_config(None, run_overrides(srv, run2, 5, **{"synthesis.program": "'x.json'"})), respond=mine)
    with pytest.raises(ConfigError, match="takes a DSPy module"):
        synthesize(load_config(None, run_overrides(srv, run2, 5)), program="program.json")
    assert len(read_log(srv.cfg.log_path)) == n_calls


class AskQuestion(dspy.Signature):
    """Answer."""

    question: str = dspy.InputField()
    answer: str = dspy.OutputField()


class WrongInputs(dspy.Module):
    def __init__(self):
        super().__init__()
        self.ask = dspy.Predict(AskQuestion)

    def forward(self, question: str):
        return self.ask(question=question)


class ForwardOnly(dspy.Module):
    """A user's respond part with only a synchronous forward (no aforward)."""

    def __init__(self):
        super().__init__()
        self.generate = RespondAndImprove(improve=False).generate

    def forward(self, reference_instruction, reference_response, instruction, feedback=None):
        draft = self.generate(
            example_instruction=reference_instruction, example_response=reference_response, instruction=instruction
        )
        return dspy.Prediction(response=draft.response)


class NoRespond(dspy.Module):
    def __init__(self):
        super().__init__()
        built = ReferenceSynthesis()
        self.collect, self.synthesizer = built.collect, built.synthesizer


def test_a_program_is_checked_before_the_first_call(server_factory, tmp_path):
    srv = server_factory()
    cfg = load_config(None, run_overrides(srv, tmp_path / "run", 4))
    with pytest.raises(ConfigError, match="needs its part 'respond'"):
        synthesize(cfg, program=NoRespond())
    with pytest.raises(ConfigError, match=r"part 'respond' \(WrongInputs\) does not take the runner's inputs"):
        synthesize(cfg, respond=WrongInputs())
    pipeline = ReferenceSynthesis()
    pipeline.collect = None
    with pytest.raises(ConfigError, match="needs its part 'collect'"):
        synthesize(cfg, program=pipeline)
    assert len(read_log(srv.cfg.log_path)) == 0 and not (tmp_path / "run" / "samples.jsonl").exists()
    # a part with only `forward` runs in worker threads: every sample is made and accounted
    summary = synthesize(
        load_config(None, run_overrides(srv, tmp_path / "sync", 5, **{"synthesis.method": "'no_feedback'"})),
        respond=ForwardOnly(),
    )
    assert summary["status"] == "complete" and summary["samples"] == 5
    assert summary["usage"]["by_stage"]["respond"]["calls"] == 5  # its untagged calls: the part's own stage
    assert summary["usage"]["calls"] == len(read_log(srv.cfg.log_path))


def test_sync_entry_points_work_inside_a_running_event_loop(server_factory, tmp_path):
    srv = server_factory()

    async def notebook_cell():
        # what Jupyter does: the cell's code runs while an event loop is running
        first = synthesize(load_config(None, run_overrides(srv, tmp_path / "a", 3)))
        second = synthesize(load_config(None, run_overrides(srv, tmp_path / "b", 3)))
        from refed_dspy.quality.judge import judge_run

        judged = judge_run(
            tmp_path / "a",
            load_config(
                None,
                run_overrides(
                    srv, tmp_path / "a", 3, **{"judge.api_base": f"'{srv.api_base}'", "judge.api_key_env": "''"}
                ),
            ),
        )
        assert judged["status"] == "complete"
        lm = dspy.LM("openai/loopback", api_base=srv.api_base, api_key="unused", cache=False)
        from refed_dspy.store.seeds import read_references

        refs, _ = read_references(None, limit=1)
        with dspy.context(lm=lm):
            pred = ReferenceSynthesis(n=1)(reference=refs[0])
        return first, second, pred

    first, second, pred = asyncio.run(notebook_cell())
    assert first["samples"] == second["samples"] == 3
    assert pred.samples and all(s.improved_response for s in pred.samples)


def test_a_compiled_part_is_saved_and_hashed_with_its_pipeline():
    # DSPy hides a compiled (frozen) module's predictors from its parent; the pipeline must not
    part = RespondAndImprove()
    part.generate.demos = [
        dspy.Example(example_instruction="Q?", example_response="A.", instruction="Hi?", response="Hi.")
    ]
    part._compiled = True
    plain = METHODS.get("refed").build_pipeline()
    holding = METHODS.get("refed").build_pipeline(respond=part)
    assert "respond.generate" in holding.dump_state() and holding.respond.generate.demos
    assert program_hash(holding) != program_hash(plain)
    assert part._compiled  # the caller's object is left as it was
    # a whole pipeline passed as program= whose part is compiled: opened on a copy
    from refed_dspy.programs.parts import with_open_parts

    given = METHODS.get("refed").build_pipeline()
    given.respond = part
    assert "respond.generate" not in given.dump_state()  # what DSPy does with a frozen child
    opened = with_open_parts(given)
    assert "respond.generate" in opened.dump_state() and program_hash(opened) == program_hash(holding)
    assert given.respond is part and part._compiled


def test_fingerprints_of_runs_made_before_program_hashes():
    from refed_dspy.config import Config, fingerprint, fingerprint_diff

    cfg = Config()
    with_file = cfg.model_copy(update={"synthesis": cfg.synthesis.model_copy(update={"program": "/p/program.json"})})
    old_builtin, old_file = fingerprint(cfg), fingerprint(with_file)  # no program_hash key: made before hashes
    assert fingerprint_diff(old_builtin, fingerprint(cfg)) == []
    assert fingerprint_diff(old_file, fingerprint(with_file, "sha256:abc")) == []  # same file: resumes
    assert fingerprint_diff(fingerprint(with_file, "sha256:abc"), fingerprint(with_file, "sha256:def")) == [
        "program content: sha256:abc -> sha256:def"
    ]
    assert fingerprint_diff(old_builtin, fingerprint(cfg, "sha256:abc")) == ["program content: built-in -> sha256:abc"]
