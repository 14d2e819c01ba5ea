"""What a Python caller hands the API as a DSPy user would write it: a config as a dict of the TOML file's tables,
references as dicts, filters as their tables or `--apply`'s strings. Each is taken as the CLI's own form is, and
anything else is one error of refed's naming what it takes, before anything is written (they were AttributeErrors
from inside)."""

from __future__ import annotations

import json

import pytest

import refed_dspy
from refed_dspy.errors import ConfigError, SeedError
from refed_dspy.store.seeds import given_references

PAIRS = [
    {"instruction": "Name three primary colours.", "response": "Red, yellow and blue."},
    {"instruction": "What is the boiling point of water at sea level?", "response": "100 degrees Celsius."},
]


def _tables(srv, run) -> dict:
    lm = {"api_base": srv.api_base, "api_key_env": ""}  # the run dir a Path, as a Python user writes it
    return {"teacher": lm, "judge": lm, "run": {"dir": run, "progress": False}, "synthesis": {"size": 4}}


def test_a_run_from_dicts_and_its_commands_from_dicts(server_factory, tmp_path):
    srv, run = server_factory(), tmp_path / "run"
    summary = refed_dspy.synthesize(_tables(srv, run), references=PAIRS)
    assert summary.status == "complete" and summary.samples == 4
    made_from = {json.loads(line)["meta"]["reference_id"] for line in (run / "samples.jsonl").read_text().splitlines()}
    assert made_from and made_from <= {r.id for r in given_references(PAIRS)}
    judged = refed_dspy.judge_run(run, {"judge": _tables(srv, run)["judge"], "judging": {"pairwise": False}})
    assert judged.status == "complete"
    kept = refed_dspy.filter_run(run, tmp_path / "kept", ["length:min_words=1", {"name": "random_subset", "k": 2}])
    assert kept.kept == 2 and [s["filter"] for s in kept.steps] == ["length", "random_subset"]
    assert refed_dspy.build_report(run, {"report": {"rouge_sample": 10}}).counts["samples"] == 4
    metric = refed_dspy.make_metric({"judge": _tables(srv, run)["judge"], "optimize": {"threshold": 0.4}})
    assert metric.threshold == 0.4


def test_references_handed_in_are_the_run_s_seeds_for_what_reads_it(server_factory, tmp_path):
    """References handed in from Python are kept in the run dir (references.jsonl), and what reads the run takes them
    as its seeds wherever the run dir is now: the report measures the samples against them, the dataset card names
    them (it said "refed-dspy embedded seed set", the report "no sample's reference text is among the seeds"). The
    run's config and fingerprint are as before (a run dir made earlier resumes); --fresh starts the file over."""
    import shutil

    from cli_helpers import run_refed

    from refed_dspy.export.card import provenance
    from refed_dspy.store.rundir import RunDir

    srv, run = server_factory(), tmp_path / "run"
    refed_dspy.synthesize(_tables(srv, run), references=PAIRS)
    kept = [json.loads(line) for line in (run / "references.jsonl").read_text().splitlines()]
    assert [(r["instruction"], r["response"]) for r in kept] == [(p["instruction"], p["response"]) for p in PAIRS]
    assert "references.jsonl" not in (run / "fingerprint.json").read_text()  # the config of record is as before
    # handed in again with one more: the run keeps both sets
    more = [*PAIRS, {"instruction": "Name a prime number above ten.", "response": "Eleven."}]
    summary = refed_dspy.synthesize({**_tables(srv, run), "synthesis": {"size": 6}}, references=more)
    assert summary.status == "complete" and len((run / "references.jsonl").read_text().splitlines()) == 3
    # moved: what reads it finds them in the run dir where it is now, and the card names no path of the machine
    moved = tmp_path / "elsewhere" / "run"
    shutil.move(str(run), str(moved))
    copies = refed_dspy.build_report(moved).reference_copies  # the run's own config: its seeds
    assert copies["measured"] == 6 and "unavailable" not in copies
    assert provenance(RunDir(moved))["seeds"].startswith("references handed in from Python")
    code, out, err = run_refed("report", str(moved))
    assert code == 0 and "not measured" not in out, out + err
    # --fresh: the references of the run it replaces are gone with it
    refed_dspy.synthesize({**_tables(srv, moved), "synthesis": {"size": 2}}, references=PAIRS[:1], on_mismatch="fresh")
    assert len((moved / "references.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize(
    "call, error, said",
    [
        (lambda t: refed_dspy.synthesize(t, references=["Name three colours."]), SeedError, r"references\[0\]: .* str"),
        (lambda t: refed_dspy.synthesize(t, references=[{"instruction": "x"}]), SeedError, "non-empty instruction"),
        (lambda t: refed_dspy.synthesize({**t, "teacher": {"modle": "x"}}), ConfigError, "unknown key 'modle'"),
        (lambda t: refed_dspy.synthesize(t, references="seeds.jsonl"), SeedError, r"load_references\('seeds.jsonl'\)"),
        (lambda t: refed_dspy.synthesize({**t, "run": {"dir": {1, 2}}}), ConfigError, "holds set"),
        (lambda t: refed_dspy.filter_run(t["run"]["dir"], f"{t['run']['dir']}-f", [3]), ConfigError, "not int"),
        (lambda t: refed_dspy.filter_run(t["run"]["dir"], f"{t['run']['dir']}-f", None), ConfigError, "no filters"),
        (lambda t: refed_dspy.compare(t, None), ConfigError, "at least one method"),
    ],
    ids=[
        "reference-string",
        "reference-without-response",
        "config-typo",
        "references-a-path",
        "config-value-no-field-takes",
        "filter-number",
        "no-filters",
        "no-methods",
    ],
)
def test_what_the_api_cannot_take_is_one_error_before_anything_is_written(server_factory, tmp_path, call, error, said):
    srv = server_factory()
    with pytest.raises(error, match=said):
        call(_tables(srv, tmp_path / "run"))
    assert not (tmp_path / "run").exists() and not (tmp_path / "run-f").exists()
