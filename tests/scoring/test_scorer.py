"""The scorer without a model (issue 52): a stand-in backend whose figures follow from the texts, so the arithmetic,
the two passes a pair, the cache, the estimate, the superfiltering filter, the report's table and the one-line error
of a missing extra are checked in milliseconds. The real model's must-shows are in test_real_scorer.py."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import pytest
from cli_helpers import lines

from refed_dspy.config import Config, ScoringConfig, load_config
from refed_dspy.export.run import export_run
from refed_dspy.filters import make_filter, superfiltering
from refed_dspy.quality.report import build_report
from refed_dspy.quality.statistics import score_source, statistics_block
from refed_dspy.scoring import PassResult, ScoreCache, Scorer, auc, pair_score
from refed_dspy.store.rundir import RunDir


class Stand:
    """A backend whose negative log-likelihoods are read off the texts: a response's words cost 2 nats each alone and
    1 nat each after an instruction that shares a word with it (3 when it shares none), so a matched pair has IFD
    e^-1 and a mismatched one e^1. It counts the passes it makes."""

    label, identity, device, pooled = "stand-in", "stand-in|float32", "cpu", True

    def __init__(self):
        self.passes: list[tuple[str, str | None]] = []

    def load(self):
        pass

    def length(self, passage, max_tokens):
        return len(passage[0].split()[:max_tokens]) + len((passage[1] or "").split()[:max_tokens])

    def run(self, passes, max_tokens, batch_size, done=lambda passes, tokens: None):
        self.passes += passes
        out = []
        for response, instruction in passes:
            words = response.split()[:max_tokens]
            if instruction is None:
                out.append(PassResult(2.0, len(words), None, 0, False, (1.0, 0.0)))
                continue
            shared = set(instruction.lower().split()) & set(response.lower().split())
            nll = 1.0 if shared else 3.0
            out.append(PassResult(nll, len(words), 0.5, len(instruction.split()), False, (1.0, 1.0)))
        for lo in range(0, len(passes), batch_size):  # a batch at a time, as a model does
            done(len(passes[lo : lo + batch_size]), sum(len(r.split()) for r, _ in passes[lo : lo + batch_size]))
        return out


@pytest.fixture
def scorer(tmp_path):
    return Scorer(Stand(), ScoringConfig(batch_size=2), ScoreCache(tmp_path / "scores.sqlite"))


MATCHED = ("Name a prime number.", "Seven is a prime number.")
MISMATCHED = ("Name a prime number.", "Paris is the capital of France.")


def test_the_statistics_of_a_pair_are_its_two_passes_arithmetic(scorer):
    matched, mismatched = scorer.score([MATCHED, MISMATCHED])
    assert matched.response_ppl == pytest.approx(math.e**2)
    assert matched.response_ppl_given_instruction == pytest.approx(math.e)
    assert matched.ifd == pytest.approx(math.exp(-1)) and mismatched.ifd == pytest.approx(math.e)
    assert matched.instruction_ppl == pytest.approx(math.exp(0.5))
    assert matched.coherence == pytest.approx(1 / math.sqrt(2))  # the stand-in's pooled states
    assert pair_score(PassResult(1.0, 3), PassResult(1.0, 3), None).ifd == pytest.approx(1.0)
    assert auc([2.0, 3.0], [1.0, 2.5]) == 0.75 and auc([1.0], [1.0]) == 0.5


def test_two_passes_a_pair_at_most_and_a_second_scoring_makes_none(scorer, tmp_path):
    backend = scorer.backend
    scorer.score([MATCHED, MISMATCHED, MATCHED])
    # two conditional passes and one alone pass per distinct response: 4, not 3 x 2
    assert len(backend.passes) == 4 and sorted(x is None for _, x in backend.passes) == [False, False, True, True]
    again = Scorer(Stand(), ScoringConfig(), ScoreCache(tmp_path / "scores.sqlite"))
    assert [s.ifd for s in again.score([MATCHED, MISMATCHED])] == [s.ifd for s in scorer.score([MATCHED, MISMATCHED])]
    assert again.backend.passes == []  # every pass was in the cache
    other_limit = Scorer(Stand(), ScoringConfig(max_tokens=64), ScoreCache(tmp_path / "scores.sqlite"))
    other_limit.score([MATCHED])
    assert len(other_limit.backend.passes) == 2  # the token limit is part of the key


def test_an_estimate_is_printed_before_scoring_and_uses_the_speed_measured_here(scorer, capsys):
    scorer.score([("Name an even number.", "Two."), ("Name an odd number.", "One."), MATCHED], show_progress=True)
    err = capsys.readouterr().err  # batches of 2 passes: 3 of them; the first says the time left, measured
    assert "score: first batch made: about 0 s left at " in err and " pairs/s" in err
    scorer.cache.note_speed("stand-in|float32|cpu", 0)  # as if never measured
    scorer.score([("Name a colour.", "Blue is a colour.")], show_progress=True)
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("scoring 1 pairs with stand-in on cpu: 2 forward passes, about")
    assert "its speed here is not known yet: the first batch will say" in first
    scorer.score([MISMATCHED], show_progress=True)
    assert "at this model's last speed here, its loading apart" in capsys.readouterr().err.splitlines()[0]
    scorer.score([MISMATCHED], show_progress=True)
    assert "every pass is in the cache" in capsys.readouterr().err


def samples_of(pairs):
    return [
        {"instruction": x, "response": y, "meta": {"id": f"s{i}", "reference_id": "r"}}
        for i, (x, y) in enumerate(pairs)
    ]


def test_superfiltering_removes_what_the_instruction_does_not_help_and_keeps_the_highest_ifd_first(scorer):
    pairs = [MATCHED, MISMATCHED, ("Name a river.", "The Nile is a long river in Africa."), ("Say hi.", "Hi there.")]
    samples = samples_of(pairs)
    result = superfiltering(samples, scorer)
    assert [s["meta"]["id"] for s in result.kept] == ["s0", "s2"]  # s3: "hi." != "hi" shares no word
    (_, reason), _ = result.removed
    assert reason.startswith("IFD 2.718 >= 1: the instruction does not help predict the response (perplexity 20.09")
    assert reason.endswith("; stand-in)")
    half = superfiltering(samples, scorer, keep=0.5)
    reasons = {s["meta"]["id"]: why for s, why in half.removed}
    assert [s["meta"]["id"] for s in half.kept] == ["s0"]  # a tie goes to the first
    assert "outside the 50% of highest IFD under 1 kept (1 of 2, the last at 0.368" in reasons["s2"]
    spec = make_filter("superfiltering", max_ifd=0.5, keep=0.2)
    assert spec.configured(load_config(None, ["scoring.max_tokens=64"])).scoring.max_tokens == 64


def test_refed_score_writes_a_line_per_pair_with_the_draft_s_figures(scorer, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rows = samples_of([MATCHED, MISMATCHED])
    rows[0]["improved_response"], rows[0]["response"] = "Seven is a prime number, as is eleven.", "Seven."
    (run / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = score_source(run, tmp_path / "scores.jsonl", scorer=scorer)
    out = lines(tmp_path / "scores.jsonl")
    assert [o["id"] for o in out] == ["s0", "s1"] and result["pairs"] == 2 and result["model"] == "stand-in"
    keys = {"instruction_ppl", "response_ppl", "response_ppl_given_instruction", "ifd", "coherence"}
    assert keys <= set(out[0]) and {f"draft_{k}" for k in keys} <= set(out[0])
    assert not any(k.startswith("draft_") for k in out[1])  # no draft apart: no draft figures
    assert out[0]["ifd"] == round(math.exp(-1), 4) and out[0]["draft_ifd"] == round(math.e, 4)  # "Seven." shares none
    assert result["means"]["ifd_at_least_1"] == 0.5


def test_refed_score_says_what_it_skipped_and_why(tmp_path, monkeypatch, capsys):
    """Issue 66: `refed score` dropped a 1 MB row of a seed file without a word (the seed reader skips rows over
    MAX_ROW_CHARS, and its count was thrown away). Now one line on stderr names what was skipped and why, and the
    summary line counts it; the pairs that could be scored are, one line each."""
    from refed_dspy.cli import main
    from refed_dspy.store.seeds import MAX_LINE_BYTES, MAX_ROW_CHARS

    monkeypatch.setattr(
        "refed_dspy.quality.statistics.open_scorer",
        lambda settings, embedding: Scorer(Stand(), settings, ScoreCache(tmp_path / "c.sqlite")),
    )
    seeds = tmp_path / "seeds.jsonl"
    rows = [MATCHED, ("Write a long text.", "word " * 200_000), MISMATCHED, ("Say nothing.", ""), MATCHED]
    with open(seeds, "w") as fh:
        fh.writelines(json.dumps({"instruction": x, "response": y}) + "\n" for x, y in rows)
        fh.write(json.dumps({"instruction": "Longer still.", "response": "x" * MAX_LINE_BYTES}) + "\n")
    out_file = tmp_path / "scores.jsonl"
    code = main(["score", str(seeds), "--out", str(out_file), "--set", "run.progress=false"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err.splitlines() == [
        f"refed score: skipped 4 rows of {seeds}: 1 duplicate, 1 empty, 1 longer than 16 MiB (line 6), "
        f"1 oversized (instruction and response over {MAX_ROW_CHARS:,} characters)"
    ]
    assert out.startswith(f"scored 2 pairs of {seeds} (4 of its 6 rows skipped) with stand-in"), out
    assert len(lines(out_file)) == 2


def test_the_report_s_table_holds_references_drafts_and_finals_naming_the_model(run, tmp_path, monkeypatch):
    """`refed report --score` on a loopback run, the scorer stood in: every reference the run used, and a stated sample
    of its samples ([scoring] report_pairs), drafts and final responses, in report.json, the text and the page."""
    monkeypatch.setattr(
        "refed_dspy.quality.report.open_scorer",
        lambda settings, embedding: Scorer(Stand(), settings, ScoreCache(tmp_path / "c.sqlite")),
    )
    config = load_config(RunDir(run).config, ["scoring.report_pairs=5"], record=True)
    report = build_report(run, config, score=True)
    block = report["statistics"]
    assert block["model"] == "stand-in" and block["samples"] == 30 and block["samples_scored"] == 5
    rows = {r["group"]: r for r in block["rows"]}
    assert list(rows) == ["references", "drafts", "final responses"]
    assert rows["references"]["pairs"] == 8 and rows["drafts"]["pairs"] == 5 and rows["final responses"]["pairs"] == 5
    assert "statistics   stand-in, 512 tokens a text; 5 of 30 samples, drawn with seed 0" in report["text"]
    page = (run / "report.html").read_text()
    assert "Data statistics" in page and "Measured by <b>stand-in</b>" in page
    assert json.loads((run / "report.json").read_text())["statistics"]["rows"][0]["group"] == "references"
    export_run(run, "messages", tmp_path / "export")
    card = (tmp_path / "export" / "README.md").read_text()
    section = card.split("## Data statistics", 1)[1].split("## Benchmark contamination", 1)[0]
    assert "Measured by stand-in" in section and "5 of 30 samples, drawn with seed 0" in section
    assert "| references | 8 | 1.649 | 7.389 |" in section and "| final responses | 5 |" in section
    everything = statistics_block(
        RunDir(run), config, Scorer(Stand(), config.scoring, ScoreCache(tmp_path / "d")), True
    )
    assert everything["all_samples"] and everything["rows"][2]["pairs"] == 30
    plain = build_report(run, config)
    assert plain["statistics"] == {} and "statistics" not in plain["text"]
    export_run(run, "messages", tmp_path / "unscored")
    assert "## Data statistics" not in (tmp_path / "unscored" / "README.md").read_text()


def test_the_core_never_imports_torch_and_a_missing_extra_is_one_line_exit_2(tmp_path):
    code = (
        "import sys, refed_dspy, refed_dspy.cli, refed_dspy.filters, refed_dspy.quality.report; "
        "refed_dspy.cli.build_parser(); assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    (tmp_path / "seeds.jsonl").write_text(json.dumps({"instruction": "Say hi.", "response": "Hi."}) + "\n")
    # a Python where transformers cannot be imported (the scorer extra not installed)
    blocked = "import sys; sys.modules['transformers'] = None; from refed_dspy.cli import main; sys.exit(main())"
    args = ["score", str(tmp_path / "seeds.jsonl"), "--out", str(tmp_path / "o.jsonl")]
    p = subprocess.run([sys.executable, "-c", blocked, *args], capture_output=True, text=True)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == [
        "refed: error: scoring needs the scorer extra (transformers is not installed): pip install --require-hashes "
        "--no-deps --only-binary :all: -r requirements/scorer.txt"
    ]
    assert not (tmp_path / "o.jsonl").exists()


def test_a_bad_source_is_one_line_before_any_model_loads(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "refed_dspy.cli", "score", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "seed source not found" in p.stderr
    assert Config().scoring.model == "smollm2"


def test_compare_adds_each_method_s_statistics(server_factory, tmp_path, monkeypatch):
    """`refed compare --score` (from Python: score=True): per method, its final responses' and drafts' mean IFD and
    the rest, with the scoring model named in compare.md; without it, no such column."""
    from conftest import run_overrides

    from refed_dspy.experiments.compare import compare

    monkeypatch.setattr(
        "refed_dspy.experiments.compare.open_scorer",
        lambda settings, embedding: Scorer(Stand(), settings, ScoreCache(tmp_path / "c.sqlite")),
    )
    srv = server_factory()
    over = run_overrides(srv, tmp_path / "cmp", 4, **{"seeds.limit": 2, "synthesis.instructions_per_feature": 2})
    result = compare(load_config(None, over), ["refed", "no_feedback"], score=True)
    rows = {r["method"]: r for r in result["rows"]}
    assert rows["refed"]["ifd"] is not None and rows["refed"]["draft_ifd"] is not None
    assert rows["no_feedback"]["draft_ifd"] is None  # no improvement step: no draft apart
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "Data statistics measured by stand-in." in md and "| draft IFD |" in md
    plain = compare(load_config(None, [*over, f"run.dir='{tmp_path / 'cmp2'}'"]), ["no_feedback"])
    assert "ifd" not in plain["rows"][0] and "IFD" not in (tmp_path / "cmp2" / "compare.md").read_text()


class _Echo:
    """A stand-in for vLLM's completions API with `echo` and `logprobs`: a token per word (its offset in the text),
    each word costing 1 nat after a word it shares with the text's first line and 2 otherwise; the first token has no
    log-probability, as vLLM's. `plain`: answers without log-probabilities (a server that does not echo them);
    `latency_s`: each request is answered that long after it came."""

    def __init__(self, plain: bool = False, latency_s: float = 0.0):
        import http.server
        import threading

        echo = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                echo.requests.append((self.path, body, dict(self.headers)))
                time.sleep(latency_s)
                choices = [echo.choice(i, text) for i, text in enumerate(body["prompt"])]
                raw = json.dumps({"choices": choices}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args):
                pass

        self.plain, self.requests = plain, []
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.api_base = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def choice(self, index: int, text: str) -> dict:
        if self.plain:
            return {"index": index, "text": " ok"}
        import re

        first = set(text.split("\n\n")[0].lower().split()) if "\n\n" in text else set()
        spans = [(m.start(), m.group()) for m in re.finditer(r"\S+", text)]
        logprobs = [None] + [-1.0 if w.lower() in first else -2.0 for _, w in spans[1:]]
        tokens = [w for _, w in spans] + [" ok"]
        return {
            "index": index,
            "text": text + " ok",
            "logprobs": {
                "tokens": tokens,
                "token_logprobs": [*logprobs, -0.5],
                "text_offset": [*(o for o, _ in spans), len(text)],
            },
        }


def test_a_vllm_server_makes_the_passes_when_api_base_is_set(tmp_path):
    """[scoring] api_base: each pass is a completion request echoing the prompt's log-probabilities (one token
    generated, left out); the response's tokens are told from the instruction's by their offsets; no key is sent."""
    from refed_dspy.errors import ConfigError
    from refed_dspy.scoring import open_scorer

    server = _Echo()
    settings = ScoringConfig(model="my-model", api_base=server.api_base, cache=str(tmp_path / "c.sqlite"), batch_size=4)
    scorer = open_scorer(settings)
    pair = ("Name a prime number please", "seven is a prime number")
    (score,) = scorer.score([pair])
    # given the instruction: "seven"(2) "is"(2) "a"(1) "prime"(1) "number"(1) -> 7/5; alone: the first token has no
    # log-probability, the other four cost 2 each
    assert score.response_ppl_given_instruction == pytest.approx(math.exp(7 / 5))
    assert score.response_ppl == pytest.approx(math.exp(2.0)) and score.ifd == pytest.approx(math.exp(7 / 5 - 2))
    assert score.instruction_ppl == pytest.approx(math.e) and score.coherence is None  # its own words: 1 each
    path, body, headers = server.requests[0]
    assert path == "/v1/completions" and body["echo"] is True and body["max_tokens"] == 1 and body["logprobs"] == 1
    assert sorted(body["prompt"]) == sorted([f"{pair[0]}\n\n{pair[1]}", pair[1]])
    assert not any(k.lower() == "authorization" for k in headers)
    assert scorer.label == f"my-model at {server.api_base}"
    plain = open_scorer(ScoringConfig(model="m", api_base=_Echo(plain=True).api_base, cache=str(tmp_path / "d")))
    with pytest.raises(ConfigError, match="does not echo prompt log-probabilities"):
        plain.score([pair])
