"""The progress line a log sees (stderr not a terminal): it names the stage the run is in, and counts the rejects of
every invocation, as the summary does."""

from __future__ import annotations

import re

from cli_helpers import lines, refed, sets
from conftest import run_overrides

PROGRESS = ["run.progress=true", "run.progress_every_s=0.2"]


def progress_lines(overrides: list[str], *args: str) -> list[str]:
    proc = refed("synthesize", *sets(overrides + PROGRESS), *args)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return [x for x in err.splitlines() if x.startswith("synthesize: ")]


def test_progress_names_the_stage_it_is_in(server_factory, tmp_path):
    # each call takes 0.5 s: the run spends seconds collecting feedback before it makes its first sample
    srv = server_factory(latency_s=0.5)
    extra = {"seeds.limit": 2, "synthesis.instructions_per_feature": 1, "synthesis.concurrency": 4}
    found = progress_lines(run_overrides(srv, tmp_path / "run", 4, **extra))
    assert found and found[0].startswith("synthesize: collecting feedback (") and " 0/4 samples" in found[0]
    assert any(re.match(r"synthesize: .*writing responses \(\d+ running\); \d/4 samples", x) for x in found), found
    assert all(
        re.match(r"synthesize: (collecting feedback|synthesizing instructions|writing responses|nothing in flight)", x)
        for x in found
    ), found


def test_progress_counts_the_rejects_of_earlier_invocations(server_factory, tmp_path):
    run = tmp_path / "run"
    extra = {"seeds.limit": 4, "synthesis.instructions_per_feature": 2, "synthesis.max_consecutive_failures": 100}
    # the server answers its 9th to 12th requests 404, whatever the machine's speed: those items are rejects (a
    # share of malformed replies left a CI run with none, its repairs having mended them all)
    faulty = server_factory(extra={"not_found_seq": [9, 12]})
    assert refed("synthesize", *sets(run_overrides(faulty, run, 16, **extra))).wait(timeout=300) in (0, 1)
    before = len(lines(run / "rejects.jsonl"))
    assert before > 0
    # resumed to a larger size against a slow, well-behaved server (another api_base: --resume-anyway): the first
    # lines come before any new reject
    slow = server_factory(latency_s=0.5)
    found = progress_lines(run_overrides(slow, run, 24, **extra), "--resume-anyway")
    counts = [int(re.search(r"(\d+) rejects", x).group(1)) for x in found]
    assert counts and counts[0] >= before and counts == sorted(counts), (before, found)
    assert counts[-1] <= len(lines(run / "rejects.jsonl"))


def test_judge_progress_counts_the_samples_earlier_invocations_gave_up_on(run, server_factory):
    judge = ["judge.api_key_env=''", "judging.pairwise=false", "judge.max_repairs=0"]
    half = server_factory(sticky_bad_scores=0.5)
    assert refed("judge", "run", str(run), *sets([f"judge.api_base='{half.api_base}'", *judge])).wait(300) == 1
    given_up = len({r["sample_id"] for r in lines(run / "judge_rejects.jsonl")})
    assert given_up > 0
    # four more samples, then judging them against a slow, well-behaved judge: its first lines count those given up
    srv = server_factory()
    grow = refed("synthesize", *sets(run_overrides(srv, run, 34, **{"seeds.limit": 8})), "--resume-anyway")
    assert grow.wait(timeout=300) == 0
    slow = server_factory(latency_s=0.5)
    proc = refed(
        "judge", "run", str(run), *sets([f"judge.api_base='{slow.api_base}'", *judge, *PROGRESS]), "--resume-anyway"
    )
    _, err = proc.communicate(timeout=300)
    found = [x for x in err.splitlines() if x.startswith("judge: ")]
    assert found and found[0].startswith("judge: judging (") and f"{given_up} rejects" in found[0], found


def test_optimize_progress_names_the_part_it_is_in(server_factory, tmp_path):
    """The newcomer trial: `refed optimize` on a slow model showed calls and cost, never what it was doing. Its
    progress line names each part as it begins: scoring the starting program, compiling, scoring the compiled one."""
    srv = server_factory(latency_s=0.3)
    over = run_overrides(srv, tmp_path / "run", 10) + [
        f"judge.api_base='{srv.api_base}'",
        "judge.api_key_env=''",
        "optimize.optimizer='bootstrap'",
        "optimize.n_train=3",
        "optimize.n_val=3",
        "judging.criteria=['helpfulness']",
    ]
    proc = refed("optimize", *sets(over + PROGRESS))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    own = [x for x in err.splitlines() if x.startswith("optimize: ") and not x.startswith("optimize: its examples: ")]
    found = [x.split(";")[0] for x in own]
    parts = list(dict.fromkeys(found))  # each part once, in the order they were shown
    # a part answered from the run's cache may pass too fast for a line: each line names a part, at least one shown
    # (compile_program's own test has the three parts in order)
    named = [
        "optimize: scoring the starting program on 3 validation examples",
        "optimize: compiling with bootstrap",
        "optimize: scoring the compiled program on 3 validation examples",
    ]
    assert set(parts) <= {"optimize: starting", *named} and set(parts) & set(named), found
