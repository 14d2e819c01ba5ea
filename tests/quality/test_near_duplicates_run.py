"""`near_duplicates` on a run dir: `refed filter --apply near_duplicates:...` removes the near-copies naming what they
repeat, `refed report` counts the clusters (report.json's `near_duplicates` block, a section of report.html, a line of
the summary), and a setting it cannot use is one line on stderr."""

from __future__ import annotations

import json
import re

from cli_helpers import lines, run_refed

from refed_dspy import build_report
from refed_dspy.config import load_config
from refed_dspy.filters import make_filter


def add_near_copies(run, originals: dict[int, int]) -> dict[str, str]:
    """Append to `run`'s samples.jsonl, for sample number i of `originals`, that many copies of it with the last word
    of its final response changed (new ids, new instructions). Returns copy id -> original id."""
    samples = lines(run / "samples.jsonl")
    made = {}
    for i, n in originals.items():
        for k in range(n):
            copy = json.loads(json.dumps(samples[i]))
            words = copy["improved_response"].split()
            words[-1] = f"changed{k}"  # the last word: one shingle of the response changes
            copy["improved_response"] = " ".join(words)
            copy["instruction"] = f"another question {i}-{k}"
            copy["meta"]["id"] = f"{samples[i]['meta']['id']}-copy{k}"
            made[copy["meta"]["id"]] = samples[i]["meta"]["id"]
            samples.append(copy)
    (run / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    return made


def test_filter_and_report_on_a_run_dir(run, tmp_path):
    copies = add_near_copies(run, {0: 1, 3: 2, 7: 1, 12: 3, **dict.fromkeys(range(14, 22), 1)})
    out = tmp_path / "kept"
    rc, stdout, err = run_refed(
        "filter", str(run), "--out", str(out), "--apply", "near_duplicates:field=response,threshold=0.8,seed=3"
    )
    assert rc == 0, err
    assert "near_duplicates" in stdout and err == ""
    rejects = lines(out / "rejects.jsonl")
    assert {r["item_id"] for r in rejects} == set(copies) and {r["filter"] for r in rejects} == {"near_duplicates"}
    for r in rejects:
        assert r["reason"].startswith(f"near-duplicate of {copies[r['item_id']]}: response Jaccard ~"), r["reason"]
    assert len(lines(out / "samples.jsonl")) == 30
    (step,) = json.loads((out / "filter_summary.json").read_text())["steps"]
    assert step["params"] == {
        "name": "near_duplicates",
        "field": "response",
        "threshold": 0.8,
        "shingle_words": 5,
        "num_perm": 128,
        "seed": 3,
    }

    rc, stdout, err = run_refed("report", str(run))
    assert rc == 0, err
    block = json.loads((run / "report.json").read_text())["near_duplicates"]
    assert block["samples"] == 45 and block["clusters"] == 12 and block["near_duplicates"] == 15
    assert block["in_clusters"] == 27 and block["sizes"] == {"2": 10, "3": 1, "4": 1}
    assert block["field"] == "response" and block["threshold"] == 0.7  # the filter's defaults: no [[filters]] here
    largest = block["largest"][0]
    assert largest["size"] == 4 and {m["id"] for m in largest["members"]} == {
        c for c, o in copies.items() if o == largest["kept"]
    }
    assert "near-dups    15 samples repeat another (33.3%), in 12 clusters, the largest of 4" in stdout
    html = (run / "report.html").read_text()
    assert ">Near-duplicates</h2>" in html and "12 clusters hold 27 of 45 samples" in html

    rc, stdout, err = run_refed("report", str(out))  # the filtered dir: none left
    assert rc == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["near_duplicates"]["clusters"] == 0
    # a reason per removed sample: the report counts them under the filter's name, not one line (and bar) each
    ((line, count),) = report["rejects"].items()
    assert count == 15 and re.fullmatch(r"near_duplicates \(1[2-5] different reasons: see rejects.jsonl\)", line)
    assert "near-dups    none (response, 5-word shingles" in stdout


def test_the_report_uses_the_configs_filter_settings(run):
    add_near_copies(run, {1: 2})
    assert build_report(run)["near_duplicates"]["clusters"] == 1  # the defaults: the final responses
    config = load_config(run / "config.toml")
    config = config.model_copy(
        update={"filters": [make_filter("min_score", min_score=5), make_filter("near_duplicates", field="instruction")]}
    )
    block = build_report(run, config)["near_duplicates"]
    assert block["field"] == "instruction" and block["clusters"] == 0  # the copies have instructions of their own


def test_a_setting_it_cannot_use_is_one_line(run, tmp_path):
    for apply, said in (
        ("near_duplicates:threshold=0.99", "threshold"),
        ("near_duplicates:field=draft", "field"),
        ("near_duplicates:shingles=3", "shingles"),
    ):
        rc, _, err = run_refed("filter", str(run), "--out", str(tmp_path / "out"), "--apply", apply)
        assert rc == 2 and said in err and len(err.strip().splitlines()) == 1, (apply, err)
        assert not (tmp_path / "out" / "samples.jsonl").exists()
