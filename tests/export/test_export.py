"""`refed export`: every format loads back with `datasets`, the grouped split, the card, the hub path, seeding a new run."""

import http.server
import json
import shutil
import threading
from collections import Counter

import datasets
import pytest
from cli_helpers import refed, run_refed
from conftest import run_overrides

from refed_dspy.config import load_config
from refed_dspy.errors import ConfigError, MissingKeyError, RunDirError
from refed_dspy.export.run import export_run, to_alpaca, to_messages, to_sharegpt
from refed_dspy.quality.filter_run import filter_run, parse_filter
from refed_dspy.store.lock import LOCK_NAME
from refed_dspy.store.ownership import MARKER
from refed_dspy.store.seeds import split_by_reference
from refed_dspy.synthesis.api import synthesize

S = {"instruction": "Q?", "response": "draft", "improved_response": "better", "meta": {"id": "x", "reference_id": "r"}}


def test_shapes():
    assert to_messages(S) == {
        "messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "better"}]
    }
    assert to_messages(S, "draft", "Be kind.")["messages"][0] == {"role": "system", "content": "Be kind."}
    assert to_messages(S, "draft")["messages"][-1]["content"] == "draft"
    assert to_sharegpt(S, system="Sys")["conversations"] == [
        {"from": "system", "value": "Sys"},
        {"from": "human", "value": "Q?"},
        {"from": "gpt", "value": "better"},
    ]
    assert to_alpaca({**S, "improved_response": None}) == {"instruction": "Q?", "input": "", "output": "draft"}


def test_split_keeps_each_reference_on_one_side():
    samples = [{"meta": {"id": f"s{i}", "reference_id": f"r{i % 7}"}} for i in range(70)]
    train, val = split_by_reference(samples, 0.2, seed=3)
    assert len(train) + len(val) == 70 and len(val) == 10  # of 0, 10, 20, ...: the closest to 14
    assert not {s["meta"]["reference_id"] for s in train} & {s["meta"]["reference_id"] for s in val}
    assert split_by_reference(samples, 0.2, seed=3) == (train, val)  # fixed seed, same split
    assert split_by_reference(samples, 0.0) == (samples, [])
    one_ref = [{"meta": {"id": f"s{i}", "reference_id": "r"}} for i in range(5)]
    assert split_by_reference(one_ref, 0.5)[1] == []  # never empties train


def test_a_split_far_from_the_share_asked_says_why(tmp_path):
    run = tmp_path / "run"  # 40 samples of 4 references: whole references make a split of 0%, 25%, 50% or 75%
    run.mkdir()
    rows = [{**S, "meta": {"id": f"s{i}", "reference_id": f"r{i % 4}"}} for i in range(40)]
    (run / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "summary.json").write_text(json.dumps({"status": "complete", "samples": 40, "size": 40}))
    p = refed("export", str(run), "--format", "messages", "--out", str(tmp_path / "out"), "--val-fraction", "0.05")
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0 and "30 train, 10 validation" in out, err
    assert err.strip().splitlines() == [
        "warning: validation holds 10 of 40 samples (25%), not the 5% asked: the split keeps each reference's "
        "samples together, and with 4 references the smallest nonzero share is 25%"
    ]
    from refed_dspy.store.seeds import share_note

    _, val = split_by_reference(rows, 0.25)
    assert len(val) == 10 and share_note(rows, val, 0.25) is None and share_note(rows, [], 0.0) is None
    assert "they all come from one reference" in share_note(rows[:1], [], 0.1)


def test_every_format_loads_back(run, tmp_path):
    samples = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    references = len({s["meta"]["reference_id"] for s in samples})
    for fmt in ("messages", "sharegpt", "alpaca", "parquet", "hf"):
        out = tmp_path / fmt
        r = export_run(run, fmt, out, val_fraction=0.25, seed=1)
        assert sum(r["splits"].values()) == 30 and r["splits"]["validation"] >= 7
        if fmt == "hf":
            dd = datasets.load_from_disk(str(out))
        else:
            kind = "parquet" if fmt == "parquet" else "json"
            dd = datasets.load_dataset(
                kind, data_files={k: str(out / v) for k, v in r["files"].items()}, cache_dir=str(tmp_path / "hfcache")
            )
        assert {k: len(v) for k, v in dd.items()} == r["splits"]
        row = dd["train"][0]
        if fmt == "messages":
            assert set(row) == {"messages"} and [m["role"] for m in row["messages"]] == ["user", "assistant"]
        elif fmt == "sharegpt":
            assert [t["from"] for t in row["conversations"]] == ["human", "gpt"]
        elif fmt == "alpaca":
            assert set(row) == {"instruction", "input", "output"}
        else:
            assert row["response"] == row["improved_response"] and row["reference_id"] and row["messages"]
        card = (out / "README.md").read_text()
        for needle in (
            "method **refed**",
            "openai/gpt-4o-mini",
            f"refed-dspy embedded seed set ({references} of its 8 references behind these samples)",
            "| samples | 30",
            "synthesis cost | $",
            "## License",
            "@inproceedings",
            "Reference-Level Feedback",
        ):
            assert needle in card, (fmt, needle)
        assert "synthesis cost | $0.00 " not in card  # a loopback run's cost is a fraction of a cent: it is said
    ids = Counter(s["meta"]["reference_id"] for s in samples)
    assert sum(ids.values()) == 30


def test_the_card_says_a_partial_judging_as_partial(run, tmp_path):
    judged = {"judge": "openai/j", "judged": 20, "samples": 30, "status": "partial", "mean_score": 6.5, "pairs": 20}
    rates = {"improvement_win_rate": 0.5, "improvement_tie_rate": 0.3, "improvement_loss_rate": 0.2}
    (run / "judge_summary.json").write_text(json.dumps({**judged, **rates, "position_bias_rate": 0.1}))
    export_run(run, "messages", tmp_path / "out")
    card = (tmp_path / "out" / "README.md").read_text()
    assert (
        "| judge | openai/j, 20 of 30 samples judged, partial: mean score 6.50 of 10; improved against draft, of 20 "
        "pairs: won 50%, lost 20%, no winner 30% (the two orders disagreed on 10%" in card
    ), card


def test_draft_system_prompt_filters_in_card_and_overwrite(run, tmp_path):
    filtered = tmp_path / "filtered"
    filter_run(run, filtered, [parse_filter("random_subset:k=10,seed=2")])
    out = tmp_path / "out"
    r = export_run(filtered, "messages", out, which="draft", system="You are terse.", val_fraction=0)
    rows = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    drafts = {
        json.loads(x)["instruction"]: json.loads(x)["response"]
        for x in (filtered / "samples.jsonl").read_text().splitlines()
    }
    assert r["splits"] == {"train": 10} and len(rows) == 10
    for row in rows:
        sys_msg, user, assistant = row["messages"]
        assert (
            sys_msg == {"role": "system", "content": "You are terse."}
            and assistant["content"] == drafts[user["content"]]
        )
    card = (out / "README.md").read_text()
    assert "`random_subset`" in card and "30 in, 10 kept" in card and "response exported | draft" in card
    assert "synthesis cost | $" in card  # read from the source run behind the filtered dir
    with pytest.raises(RunDirError, match="already exists"):
        export_run(filtered, "messages", out)
    assert len((out / "train.jsonl").read_text().splitlines()) == 10  # nothing lost
    export_run(filtered, "alpaca", out, overwrite=True, val_fraction=0)
    assert not (out / "train.jsonl").read_text().startswith('{"messages"')
    with pytest.raises(ConfigError, match="unknown export format"):
        export_run(run, "csv", tmp_path / "z")


def test_messages_export_seeds_the_next_run(run, tmp_path, server_factory):
    out = tmp_path / "msgs"
    export_run(run, "messages", out, system="System text is skipped by the seed reader.", val_fraction=0)
    srv = server_factory()
    nxt = tmp_path / "next"
    s = synthesize(load_config(None, run_overrides(srv, nxt, 5, **{"seeds.source": f"'{out / 'train.jsonl'}'"})))
    assert s["samples"] == 5 and s["references"] == 30
    fed = {json.loads(x)["reference_id"] for x in (nxt / "feedback.jsonl").read_text().splitlines()}
    assert fed  # references built from the exported pairs


def test_hub_push_is_real_code_up_to_the_network(run, tmp_path, monkeypatch):
    with pytest.raises(MissingKeyError, match="HF_TOKEN"):
        export_run(run, "hub", repo_id="me/data")
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    with pytest.raises(ConfigError, match="--repo-id"):
        export_run(run, "hub")
    pushed = {}

    def fake_push(self, repo_id, private=None, token=None, **kw):
        pushed["data"] = (repo_id, private, token, {k: len(v) for k, v in self.items()})

    def fake_card_push(self, repo_id, token=None, repo_type=None, **kw):
        pushed["card"] = (repo_id, token, repo_type, str(self))

    import huggingface_hub

    monkeypatch.setattr(datasets.DatasetDict, "push_to_hub", fake_push)
    monkeypatch.setattr(huggingface_hub.DatasetCard, "push_to_hub", fake_card_push)
    r = export_run(run, "hub", repo_id="me/data", val_fraction=0.2)
    assert pushed["data"][:3] == ("me/data", True, "hf_test_token") and pushed["data"][3] == r["splits"]
    assert pushed["card"][:3] == ("me/data", "hf_test_token", "dataset") and "@inproceedings" in pushed["card"][3]


def test_cli_export_and_bad_input(run, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    p = refed("export", str(run), "--format", "messages", "--out", str(tmp_path / "m"), "--val-fraction", "0.2")
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert "exported" in out and (tmp_path / "m" / "validation.jsonl").exists()
    for args, msg in (
        (["--format", "hub", "--repo-id", "me/x"], "HF_TOKEN"),
        (["--format", "messages"], "needs --out"),
        (["--format", "messages", "--out", str(tmp_path / "data.jsonl")], "looks like a file name"),
        (["--format", "messages", "--out", str(tmp_path / "m")], "already exists"),
        (["--format", "alpaca", "--out", str(tmp_path / "q"), "--val-fraction", "1.5"], "val-fraction"),
    ):
        p = refed("export", str(run), *args)
        _, err = p.communicate(timeout=120)
        assert p.returncode == 2 and msg in err and len(err.strip().splitlines()) == 1, (args, err)
    assert not (tmp_path / "data.jsonl").exists()


def test_cli_export_to_parquet_and_hf_prints_no_progress_bars(run, tmp_path):
    for fmt in ("parquet", "hf"):
        p = refed("export", str(run), "--format", fmt, "--out", str(tmp_path / fmt))
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and err == "", (fmt, err)
        assert out.startswith("exported ") and len(out.strip().splitlines()) == 1, (fmt, out)
    assert datasets.is_progress_bar_enabled()
    export_run(run, "parquet", tmp_path / "in-process")
    assert datasets.is_progress_bar_enabled()  # a Python caller's setting is given back


def test_export_logs_input_datasets_to_mlflow(run, tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = load_config(run / "config.toml", ["tracking.enabled=true", f"tracking.mlflow_uri='{uri}'"])
    export_run(run, "parquet", tmp_path / "pq", val_fraction=0.2, config=cfg)
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["refed"], output_format="list")
    assert len(runs) == 1
    inputs = runs[0].inputs.dataset_inputs
    assert sorted(i.dataset.name for i in inputs) == ["run-train", "run-validation"]
    assert {t.value for i in inputs for t in i.tags if t.key == "mlflow.data.context"} == {
        "export/train",
        "export/validation",
    }


def _tree(path):
    """Every file under `path` with its bytes."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_export_never_writes_onto_into_or_around_its_input(run, tmp_path):
    beside = tmp_path / "notes.txt"
    beside.write_text("unrelated, keep me")
    before = _tree(tmp_path)
    for out, msg in (
        (run, "is the input"),
        (tmp_path, "contains the input"),
        (run / "export", "lies inside the input"),
    ):
        p = refed("export", str(run), "--format", "messages", "--out", str(out), "--overwrite")
        _, err = p.communicate(timeout=120)
        assert p.returncode == 2 and msg in err and len(err.strip().splitlines()) == 1, (out, err)
    assert _tree(tmp_path) == before
    # another run dir, or a folder holding one, is no output either
    other = tmp_path / "runs" / "other"
    shutil.copytree(run, other)
    before = _tree(tmp_path)
    for out, msg in (
        (other, "holds the run dir"),
        (tmp_path / "runs", "holds the run dir"),
        (other / "x", "lies inside the run dir"),
    ):
        with pytest.raises(RunDirError, match=msg):
            export_run(run, "messages", out, overwrite=True)
    assert _tree(tmp_path) == before  # every byte of every input and of the file beside it


def test_overwrite_removes_only_what_an_export_wrote(run, tmp_path):
    out = tmp_path / "exp"
    export_run(run, "hf", out, val_fraction=0.2)
    (out / "my-notes.md").write_text("mine")
    export_run(run, "messages", out, overwrite=True, val_fraction=0.2)
    assert (out / "my-notes.md").read_text() == "mine"
    assert not (out / "dataset_dict.json").exists() and not (out / "train").exists()
    assert (out / "train.jsonl").exists() and (out / "README.md").exists()


def test_an_export_folder_keeps_no_lock_file(run, tmp_path):
    out = tmp_path / "exp"
    export_run(run, "messages", out)
    assert not (out / LOCK_NAME).exists() and (out / MARKER).read_text() == "export\n"
    export_run(run, "parquet", out, overwrite=True)  # its own folder: taken again
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "README.md", "train.parquet", "validation.parquet"]


class _Hub(http.server.BaseHTTPRequestHandler):
    """A Hub that answers every request with one status (the server's `status`)."""

    def _any(self):
        if int(self.headers.get("Content-Length") or 0):
            self.rfile.read(int(self.headers["Content-Length"]))
        body = b'{"error": "the hub says no"}'
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = _any

    def log_message(self, *args):
        pass


def test_a_push_the_hub_refuses_is_one_line(run):
    """The push is real code up to the Hub (a local one, HF_ENDPOINT): offline mode, a Hub that fails (500) and one
    that refuses the token (401) each end in one line and the documented exit code, not huggingface_hub's traceback."""
    env = {"HF_TOKEN": "hf_test_token_0123456789abcdef"}
    args = ("export", str(run), "--format", "hub", "--repo-id", "me/data", "--val-fraction", "0")
    code, _, err = run_refed("export", str(run), "--format", "hub", "--repo-id", "bad id!!/x", env_extra=env)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--repo-id 'bad id!!/x' is not a Hub repo id" in err
    code, _, err = run_refed(*args, env_extra={**env, "HF_HUB_OFFLINE": "1"})
    assert code == 2 and err.strip().splitlines() == [
        "refed: error: cannot push me/data: HF_HUB_OFFLINE is set; unset it to reach the Hub"
    ], err
    for status, exit_code, says in (
        (500, 3, "pushing me/data to the Hub failed: "),
        (401, 2, "the Hub refused $HF_TOKEN for me/data: "),
    ):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
        server.status = status
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            hub = {**env, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}"}
            code, _, err = run_refed(*args, env_extra=hub)
        finally:
            server.shutdown()
        assert code == exit_code and len(err.strip().splitlines()) == 1 and says in err, err
        assert "Traceback" not in err and "hf_test_token_0123456789abcdef" not in err
