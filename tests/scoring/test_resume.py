"""`refed score` keeps what it finished where it says (issue 69, item 5): each row is appended to --out as soon as its
pair is scored, a stop leaves them there, and the same command again scores only the pairs --out lacks; its time left
after the first batch is measured on the batches made, the model's loading left out.

Before: the rows were written once every pair was scored, so a Ctrl-C left no --out at all (its passes only in the
cache) while saying "what was written is kept"; and the time left after the first batch counted the model's loading
as batch time ("about 17 min left" in a 563 s run)."""

from __future__ import annotations

import json
import re
import signal
import time

import pytest
from cli_helpers import lines, refed, sets
from test_scorer import MATCHED, MISMATCHED, Stand, _Echo

from refed_dspy.config import ScoringConfig
from refed_dspy.errors import ConfigError, RunInterrupted
from refed_dspy.quality.statistics import score_source
from refed_dspy.scoring import ScoreCache, Scorer
from refed_dspy.scoring.pace import Pace

RESUME = "nothing it wrote is lost: run the same command again to go on"


class Clock:
    """A clock a test moves."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_pace_leaves_the_load_out_and_weights_batches_by_their_work():
    """Batches of unequal work, 0.1 s a unit, after a 45 s load; the first batch carries 2 s of warm-up that cannot be
    told from its work. After the first batch the time left is within 35% of the truth; from the second on, with the
    first left out, within 1%. Counted from the command's start (the load as batch time), it was 5.7 times the
    truth."""
    clock, work = Clock(), [100, 300, 200, 100, 300, 250]
    pace = Pace(sum(work), pairs=12, clock=clock)
    assert pace.seconds_left() is None and pace.status() == ""
    clock.now = 45.0
    pace.start()
    for i, w in enumerate(work[:-1]):
        clock.now += w * 0.1 + (2.0 if i == 0 else 0.0)
        pace.add(w)
        truth = sum(work[i + 1 :]) * 0.1
        assert pace.seconds_left() == pytest.approx(truth, rel=0.35 if i == 0 else 0.01), (i, pace.seconds_left())
    naive = (sum(work) - work[0]) / (work[0] / (45.0 + 12.0))  # the old way: the load in the first batch's time
    assert naive / (sum(work[1:]) * 0.1) > 5
    assert re.fullmatch(r"about 25 s left at 0\.\d\d pairs/s", pace.status()), pace.status()


class Timed(Stand):
    """The stand-in on a clock: loading the model takes `load_s`, each batch `batch_s`."""

    def __init__(self, clock: Clock, load_s: float, batch_s: float):
        super().__init__()
        self.clock, self.load_s, self.batch_s = clock, load_s, batch_s

    def load(self):
        self.clock.now += self.load_s

    def run(self, passes, max_tokens, batch_size, done=lambda passes, tokens: None):
        self.clock.now += self.batch_s
        return super().run(passes, max_tokens, batch_size, done)


def _seconds(text: str) -> float:
    said = re.search(r"about (.+?) left", text).group(1)
    return sum(float(n) * {"s": 1, "min": 60, "h": 3600}[u] for n, u in re.findall(r"([\d.]+) (s|min|h)", said))


def test_the_time_left_after_the_first_batch_leaves_the_model_s_loading_out(tmp_path, capsys):
    """30 pairs of like length, batches of 4 passes (15 of them) at a steady 12 s after a 90 s load: after the first
    batch the line says the time left within 35% of the 168 s left (before: about 1,428 s)."""
    clock = Clock()
    pairs = [(f"Name the number {i:02d}.", f"The number {i:02d} is a number.") for i in range(30)]
    scorer = Scorer(
        Timed(clock, 90.0, 12.0), ScoringConfig(batch_size=4), ScoreCache(tmp_path / "c.sqlite"), clock=clock
    )
    scorer.score(pairs, show_progress=True)
    err = capsys.readouterr().err
    line = next(x for x in err.replace("\r", "\n").splitlines() if "first batch made" in x)
    assert "(the model's loading, 90 s, left out of the rate)" in line, line
    assert _seconds(line) == pytest.approx(14 * 12.0, rel=0.35), line
    assert clock.now == 90.0 + 15 * 12.0


def _seed_file(path, n: int) -> list[tuple[str, str]]:
    pairs = [
        (f"Describe the colour number {i}.", f"Colour {i} is a shade between blue and green {i}.") for i in range(n)
    ]
    path.write_text("".join(json.dumps({"instruction": x, "response": y}) + "\n" for x, y in pairs))
    return pairs


def test_a_scoring_stopped_keeps_its_rows_in_out_and_the_next_scores_only_the_rest(tmp_path):
    """In process: a stand-in stopped (KeyboardInterrupt) in its fourth batch. --out holds the rows of the pairs
    whose passes were made, each a whole line; RunInterrupted carries them. The cache emptied, the same scoring again
    makes only the passes of the pairs --out lacks, and --out ends with each row once, in the source's order."""
    seeds = tmp_path / "seeds.jsonl"
    pairs = _seed_file(seeds, 10)
    out = tmp_path / "scores.jsonl"

    class Stopped(Stand):
        def run(self, passes, max_tokens, batch_size, done=lambda passes, tokens: None):
            if len(self.passes) >= 6:
                raise KeyboardInterrupt
            return super().run(passes, max_tokens, batch_size, done)

    first = Scorer(Stopped(), ScoringConfig(batch_size=2), ScoreCache(tmp_path / "c.sqlite"))
    with pytest.raises(RunInterrupted) as stop:
        score_source(seeds, out, scorer=first)
    kept = lines(out)
    assert len(kept) == 3 and stop.value.summary["pairs"] == 3 and stop.value.summary["status"] == "interrupted"
    assert [r["instruction"] for r in kept] == [x for x, _ in pairs[:3]]
    (tmp_path / "c.sqlite").unlink()  # only --out says what was done
    again = Scorer(Stand(), ScoringConfig(batch_size=2), ScoreCache(tmp_path / "c2.sqlite"))
    result = score_source(seeds, out, scorer=again)
    assert {x for _, x in again.backend.passes} == {x for x, _ in pairs[3:]} | {None}
    assert len(again.backend.passes) == 14  # 7 pairs, two passes each: none of the 3 kept
    assert [r["instruction"] for r in lines(out)] == [x for x, _ in pairs]
    assert result["pairs"] == 10 and result["resumed"] == 3 and result["dropped"] == 0
    done = Scorer(Stand(), ScoringConfig(batch_size=2), ScoreCache(tmp_path / "c3.sqlite"))
    assert score_source(seeds, out, scorer=done)["resumed"] == 10 and done.backend.passes == []  # nothing left
    assert [r["instruction"] for r in lines(out)] == [x for x, _ in pairs]


def test_a_torn_last_line_is_dropped_on_resume_and_rows_of_other_scorings_kept(tmp_path):
    """--out left by a kill mid-line, with a row of another model and one of a pair the source no longer gives: the
    torn line is dropped, the two rows of this scoring kept (not scored again), the rest scored once, and the other
    two rows stay in the file, after this scoring's (a scoring never deletes rows it did not make now)."""
    seeds = tmp_path / "seeds.jsonl"
    pairs = _seed_file(seeds, 4)
    out = tmp_path / "scores.jsonl"
    score_source(seeds, out, scorer=Scorer(Stand(), ScoringConfig(), ScoreCache(tmp_path / "a.sqlite")))
    rows = lines(out)
    other = {**rows[2], "model": "another model"}
    gone = {**rows[3], "id": "0123456789abcdef", "instruction": "A pair no longer in the source."}
    text = "".join(json.dumps(r) + "\n" for r in (rows[1], other, rows[0], gone)) + json.dumps(rows[3])[:40]
    out.write_text(text)
    stand = Stand()
    result = score_source(seeds, out, scorer=Scorer(stand, ScoringConfig(), ScoreCache(tmp_path / "b.sqlite")))
    assert {x for _, x in stand.passes} == {pairs[2][0], pairs[3][0], None} and len(stand.passes) == 4
    assert lines(out) == [*rows, other, gone] and result["resumed"] == 2 and result["dropped"] == 1


def test_a_limit_keeps_the_rows_it_does_not_ask_for_and_a_file_not_of_refed_score_is_refused(tmp_path):
    """The same --out scored whole, then with --limit 2: the other rows stay. A file of other lines (a run's
    samples.jsonl given as --out by mistake) is refused untouched, before any pass."""
    seeds = tmp_path / "seeds.jsonl"
    _seed_file(seeds, 4)
    out = tmp_path / "scores.jsonl"
    score_source(seeds, out, scorer=Scorer(Stand(), ScoringConfig(), ScoreCache(tmp_path / "a.sqlite")))
    rows = lines(out)
    stand = Stand()
    score_source(seeds, out, limit=2, scorer=Scorer(stand, ScoringConfig(), ScoreCache(tmp_path / "b.sqlite")))
    assert stand.passes == [] and sorted(map(json.dumps, lines(out))) == sorted(map(json.dumps, rows))
    samples = tmp_path / "samples.jsonl"
    samples.write_text(seeds.read_text())
    stand = Stand()
    with pytest.raises(ConfigError, match="no rows of `refed score`"):
        score_source(seeds, samples, scorer=Scorer(stand, ScoringConfig(), ScoreCache(tmp_path / "c.sqlite")))
    assert samples.read_text() == seeds.read_text() and stand.passes == []


def test_the_scorer_gives_each_part_once_as_its_passes_are_made(tmp_path):
    """`score_parts`: the parts the cache holds first, then each part as soon as the batch that finishes it is made; a
    pass two parts share is made once."""
    scorer = Scorer(Stand(), ScoringConfig(batch_size=2), ScoreCache(tmp_path / "c.sqlite"))
    scorer.score([MATCHED])
    parts = [[MISMATCHED], [MATCHED], [MISMATCHED, ("Name a prime number.", "Two is a prime number.")]]
    given = []
    for i, scores in scorer.score_parts(parts):
        given.append((i, len(scores), len(scorer.backend.passes)))
    assert given[0] == (1, 1, 2)  # cached whole: given before any new pass is made
    assert sorted(i for i, *_ in given) == [0, 1, 2] and scorer.backend.passes.count(MISMATCHED[::-1]) == 1
    assert len(scorer.backend.passes) == 2 + 4  # MATCHED's 2 first; then MISMATCHED's 2 and the third pair's 2


def test_refed_score_stopped_by_sigint_keeps_its_rows_and_the_same_command_scores_only_the_rest(tmp_path):
    """A real `refed score` of 24 pairs on a vLLM stand-in (batches of 4 passes, 0.25 s each), SIGINT once --out holds
    4 rows: exit 130, its last line says the rows are kept, stdout how many, and --out holds them, whole lines. The
    cache removed (so only --out can tell), the same command scores the rest: no pass of a pair --out held is asked
    again, and --out ends with each of the 24 rows once, in order."""
    server = _Echo(latency_s=0.25)
    seeds, out = tmp_path / "seeds.jsonl", tmp_path / "scores.jsonl"
    pairs = _seed_file(seeds, 24)
    settings = [
        f"scoring.api_base='{server.api_base}'",
        f"scoring.cache='{tmp_path / 'c.sqlite'}'",
        "scoring.batch_size=4",
    ]
    command = ("score", str(seeds), "--out", str(out), *sets([*settings, "scoring.model=m"]))
    proc = refed(*command, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(lines(out)) < 4 and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == f"refed: stopped by SIGINT; {RESUME}" and "Traceback" not in stderr
    text = out.read_text()
    kept = lines(out)
    assert text.endswith("\n") and 4 <= len(kept) < 24
    assert stdout.startswith(f"scored {len(kept)} of 24 pairs of {seeds} with m at {server.api_base}: interrupted")
    done = {r["instruction"] for r in kept}
    (tmp_path / "c.sqlite").unlink()
    asked_before = len(server.requests)
    proc = refed(*command)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    prompts = [p for _, body, _ in server.requests[asked_before:] for p in body["prompt"]]
    assert not [p for p in prompts if any(p.startswith(x) for x in done)]
    assert not [p for p in prompts if any(p == y for x, y in pairs if x in done)]
    assert len(prompts) == 2 * (24 - len(kept))
    assert [r["instruction"] for r in lines(out)] == [x for x, _ in pairs]
    assert f"scored 24 pairs of {seeds} with m at {server.api_base}" in stdout
    assert f"{len(kept)} of them there already" in stdout


def test_the_time_left_counts_down_while_a_batch_runs():
    """The newcomer trial: between batches the rate was taken over the time up to now, so the figures grew while a
    batch ran. They are the batches made; the time left goes down while the next one runs."""
    clock = Clock()
    pace = Pace(400, pairs=4, clock=clock)
    pace.start()
    for _ in range(2):
        clock.now += 10.0
        pace.add(100)
    before = (pace.rate(), pace.seconds_left())
    assert before == (10.0, 20.0)
    clock.now += 5.0  # the third batch under way
    assert (pace.rate(), pace.seconds_left()) == (10.0, 15.0)
