"""Copies of the reference in a run's data: the `reference_copy` filter (Python and `refed filter`) removes samples that
copy their own reference and keeps a paraphrase; `refed report` counts them (report.json's `reference_copies`, a
section of report.html beside the references); samples of a method that rewrites its reference are not measured."""

import json
import re

import pytest
from cli_helpers import lines, run_refed
from conftest import run_overrides

from refed_dspy.config import load_config
from refed_dspy.errors import ConfigError
from refed_dspy.filters import make_filter, reference_copy
from refed_dspy.quality.figures import copies_block, run_references
from refed_dspy.quality.report import build_report
from refed_dspy.store.rundir import RunDir
from refed_dspy.synthesis.api import synthesize
from refed_dspy.text.closeness import closeness

DISCOUNT = "148c1e76ec00f979"  # the embedded reference on 20% then 10% off
# written for this test: a new instruction on the reference's subject, and an answer that says what the reference's
# answer says in other words; neither is a copy
NEW_INSTRUCTION = (
    "A jacket is marked 25% off and a coupon takes another 15% off at the till. What is the total discount?"
)
PARAPHRASE = (
    "It is not 40%. The coupon applies to the already reduced price, so it removes less than 15% of the original. "
    "Take a $100 jacket: a quarter off leaves $75, and 15% of $75 is $11.25, so you pay $63.75, which is 36.25% below "
    "the tag. Discounts in a row multiply: 0.75 times 0.85 is 0.6375. A shortcut is to add the two rates and subtract "
    "their product: 25 + 15 - 3.75 = 36.25. Which coupon comes first makes no difference, since multiplication can be "
    "done in any order. Shops like stacked offers because they sound bigger than they are."
)


@pytest.fixture
def run(server_factory, tmp_path):
    """A finished refed run of 20 samples on the embedded seeds (all 40 of them readable, the discount one included)."""
    path = tmp_path / "run"
    synthesize(
        load_config(None, run_overrides(server_factory(), path, 20, **{"synthesis.instructions_per_feature": 2}))
    )
    return path


def two_words_changed(text: str) -> str:
    words = text.split()
    words[1], words[-2] = "CHANGED", "ALTERED"
    return " ".join(words)


def doctor(run) -> tuple[list[dict], dict[str, str]]:
    """The run's samples with three made to order: one whose improved response is its reference's response, one whose
    instruction is its reference's with two words changed, and one paraphrase of the discount reference."""
    refs = run_references(RunDir(run))
    samples = lines(run / "samples.jsonl")
    a = samples[0]
    # the lines come in the order the samples were made: b is the first whose reference's instruction is long enough
    # for two words changed to stay a copy (9 of the 40 embedded ones, 5 to 7 words, are not)
    b = next(
        s
        for s in samples[1:]
        if closeness(two_words_changed(ref := refs[s["meta"]["reference_id"]][0]), ref).value >= 0.8
    )
    c = next(s for s in samples[1:] if s is not b)
    a["improved_response"] = refs[a["meta"]["reference_id"]][1]
    b["instruction"] = two_words_changed(refs[b["meta"]["reference_id"]][0])
    c["meta"]["reference_id"] = DISCOUNT
    c["instruction"], c["improved_response"] = NEW_INSTRUCTION, PARAPHRASE
    (run / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    return samples, {"copy": a["meta"]["id"], "edited": b["meta"]["id"], "paraphrase": c["meta"]["id"]}


def test_the_filter_removes_copies_and_keeps_a_paraphrase(run, tmp_path):
    samples, ids = doctor(run)
    refs = run_references(RunDir(run))
    assert closeness(PARAPHRASE, refs[DISCOUNT][1]).value < 0.5  # far from a copy, though on the same subject
    result = reference_copy(samples, refs)
    removed = {s["meta"]["id"]: why for s, why in result.removed}
    assert removed.keys() == {ids["copy"], ids["edited"]}
    assert removed[ids["copy"]] == "response copies its reference's response: ROUGE-L 1.00 >= 0.8"
    assert re.fullmatch(
        r"instruction copies its reference's instruction: ROUGE-L 0\.\d\d >= 0\.8", removed[ids["edited"]]
    )
    assert len(result.kept) == len(samples) - 2 and ids["paraphrase"] in {s["meta"]["id"] for s in result.kept}
    # the settings: the response alone, and a threshold the edited instruction does not reach (halfway from its
    # closeness to 1: a reference instruction of 40 words or more, two of them changed, is 0.95 close)
    only = make_filter("reference_copy", field="response").with_references(refs).apply(samples, {})
    assert [s["meta"]["id"] for s, _ in only.removed] == [ids["copy"]]
    edited = next(s for s in samples if s["meta"]["id"] == ids["edited"])
    above = (closeness(edited["instruction"], refs[edited["meta"]["reference_id"]][0]).value + 1) / 2
    strict = make_filter("reference_copy", threshold=above).with_references(refs).apply(samples, {})
    assert [s["meta"]["id"] for s, _ in strict.removed] == [ids["copy"]]
    # a sample whose reference text is unknown is kept; so is one of a method that rewrites its reference
    assert reference_copy(samples, {}).removed == []
    rewritten = [{**s, "meta": {**s["meta"], "method": "reflection"}} for s in samples]
    assert reference_copy(rewritten, refs).removed == []
    with pytest.raises(ConfigError, match=r"needs the samples' references.*with_references"):
        make_filter("reference_copy").apply(samples, {})

    # `refed filter`: the references come from the run's seeds
    out = tmp_path / "filtered"
    code, stdout, err = run_refed("filter", str(run), "--out", str(out), "--apply", "reference_copy")
    assert code == 0, err
    rejects = lines(out / "rejects.jsonl")
    assert {r["item_id"] for r in rejects} == {ids["copy"], ids["edited"]}
    assert all(r["filter"] == "reference_copy" and "copies its reference's" in r["reason"] for r in rejects)
    assert len(lines(out / "samples.jsonl")) == len(samples) - 2


def test_the_report_counts_copies_and_shows_them_beside_their_references(run):
    samples, ids = doctor(run)
    report = build_report(run)
    block = report.reference_copies
    assert block["measured"] == len(samples) and block["no_reference"] == 0 and block["threshold"] == 0.8
    assert block["over_threshold"] == 2 and block["parts"]["response"]["over_threshold"] == 1
    assert block["parts"]["instruction"]["over_threshold"] == 1
    assert sum(block["histogram"].values()) == len(samples) and block["histogram"]["0.9-1.0"] >= 1
    worst = block["worst"]
    assert {w["id"] for w in worst[:2]} == {ids["copy"], ids["edited"]} and all(w["copy"] for w in worst[:2])
    assert not any(w["copy"] for w in worst[2:])
    top = next(w for w in worst if w["id"] == ids["copy"])
    assert top["closeness"] == 1.0 and top["part"] == "response" and top["why"] == "response: ROUGE-L 1.00"
    assert json.loads((run / "report.json").read_text())["reference_copies"]["over_threshold"] == 2
    page = (run / "report.html").read_text()
    section = page[page.index("<section id='reference-copies'>") :]
    section = section[: section.index("</section>")]
    assert "Copies of the reference" in section and "2 of 20 samples at or over 0.8" in section
    assert "Reference response" in section and "Reference instruction" in section
    assert "copies       2 of 20 samples at or over 0.8" in report.text


def test_unreadable_seeds_refuse_the_filter_and_leave_the_report_saying_why(run, tmp_path):
    config = (run / "config.toml").read_text()
    assert "source =" not in config  # the embedded seeds: point them at a file that is not there
    (run / "config.toml").write_text(config.replace("[seeds]", f'[seeds]\nsource = "{tmp_path / "gone.jsonl"}"'))
    code, _, err = run_refed("filter", str(run), "--out", str(tmp_path / "f"), "--apply", "reference_copy")
    assert code == 2 and "gone.jsonl" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "f" / "samples.jsonl").exists()
    block = build_report(run).reference_copies
    assert block["measured"] == 0 and "the run's seeds cannot be read here" in block["unavailable"]


def test_a_method_that_rewrites_its_reference_is_not_measured():
    sample = {"instruction": "x", "improved_response": "y", "meta": {"id": "s", "method": "reflection"}}
    block = copies_block([sample], {}, 0.8)
    assert block["measured"] == 0 and block["rewrites"] == 1 and block["over_threshold"] == 0
