"""The engine sleeps while it waits (issue 51, item 4): its loop wakes for an answer, a retry's time (when the retry
could start then), a stop or a redraw that is due, never in a loop of zero-second waits; the progress bar is drawn
at most 5 times a second. Counted in wake-ups and redraws against the run's events, never in seconds."""

from __future__ import annotations

import asyncio
import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time

from conftest import run_overrides

from refed_dspy.engine import progress as progress_module
from refed_dspy.engine.execution import Engine, Limits
from refed_dspy.engine.failures import Failure
from refed_dspy.engine.progress import REDRAW_S, Progress
from refed_dspy.ledger.usage import Totals


class _Hangs:
    """A stage of five pieces of work in two slots: two hang until `gate` opens, one fails once with a retry due in
    0.05 s, when both slots are held by the hanging ones; the rest answer at once."""

    def __init__(self, gate: asyncio.Event):
        self.gate, self.todo, self.done, self.failed = gate, ["flaky", "hang-1", "hang-2", "a", "b"], [], False

    def fill(self, engine: Engine) -> None:
        while self.todo and engine.slots_free() > 0 and engine.start("x", self.todo[0], 1):
            self.todo.pop(0)

    async def work(self, kind, payload, calls):
        if payload.startswith("hang"):
            await self.gate.wait()
        if payload == "flaky" and not self.failed:
            self.failed = True
            return None, Failure("timeout", "no reply", final=False, retryable=True, retry_after=0.05)
        return payload, None

    def handle(self, kind, payload, result, failure, usage) -> None:
        self.done.append(payload)

    def key(self, kind, payload) -> str:
        return payload

    def take_back(self, kind, payload) -> bool:
        return False

    def wants_more(self) -> bool:
        return True

    def note_attempt(self, key, outcome, usage) -> None:
        pass


def test_a_retry_due_while_every_slot_is_taken_waits_for_a_slot_instead_of_spinning():
    """A retry whose time has come while every slot is held cannot start until work ends: the loop waits for that,
    once. It used to wait zero seconds again and again until then (the client spun at 100% CPU through each timeout
    of a hanging server, and redrew the progress bar each time round): here thousands of wake-ups in the 0.3 s the
    two hanging pieces of work hold their slots, for 6 events."""
    wakes = []

    async def main() -> list[str]:
        gate = asyncio.Event()
        stage = _Hangs(gate)
        engine = Engine(stage, Limits(concurrency=2, max_retries=2, worst_calls={"x": 1}))
        engine.first.answered = True  # the endpoint check is not what this is about
        engine.on_progress = lambda: wakes.append(len(stage.done))
        asyncio.get_running_loop().call_later(0.3, gate.set)  # the server stops hanging
        await engine.run()
        return stage.done

    done = asyncio.run(main())
    assert sorted(done) == ["a", "b", "flaky", "hang-1", "hang-2"]
    # each wake-up has news: the failed attempt, the hanging pair (together or apart), then the retry, a and b
    assert len(wakes) <= 6, f"{len(wakes)} wake-ups for 6 events"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _redraws(text: str) -> int:
    return len(re.findall(r"\r(?!\n)", text))


def test_the_bar_is_drawn_at_most_five_times_a_second_and_ends_on_the_latest_figures(monkeypatch):
    """2,000 updates over 2 s of the bar's clock (it was redrawn at every one): at most 5 draws a second; an update
    held back says when it may be drawn, and one then draws the latest figures."""
    screen = _Terminal()
    monkeypatch.setattr(progress_module, "console", lambda: screen)
    clock = _Clock()
    bar = Progress(total=2000, clock=clock)
    totals = Totals()
    start = _redraws(screen.getvalue())  # the line as it is first drawn, when progress starts
    clock.now += 0.05  # the first figures come a while after
    waits = []
    for done in range(1, 2001):
        clock.now += 0.001
        waits.append(bar.update(done, totals, 0))
    drawn = _redraws(screen.getvalue()) - start
    assert 9 <= drawn <= 2 * 5 + 1, drawn  # one at the first update, then one every 0.2 s
    held = [w for w in waits if w is not None]
    assert held and all(0 < w <= REDRAW_S for w in held)
    assert waits[-1] is not None  # the last figures are not drawn yet ...
    before = screen.getvalue()
    assert "2000/2000" not in before.rsplit("\r", 1)[-1]
    clock.now += waits[-1]
    assert bar.update(2000, totals, 0) is None  # ... until their time comes
    assert "2000/2000" in screen.getvalue()[len(before) :]
    bar.close()


def _on_a_terminal(args: list[str], sized: bool = True, arrivals: list[tuple[float, bytes]] | None = None) -> bytes:
    """`refed ARGS` with stdout and stderr on a pseudo-terminal of 120 columns (`sized`; else as a new one is, 0 rows
    and 0 columns, as under `script` run without a terminal): all it wrote there (with each chunk's arrival time in
    `arrivals`)."""
    main, child = pty.openpty()
    if sized:
        fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a new pty has 0 columns
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "true"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "refed_dspy.cli", *args], stdin=subprocess.DEVNULL, stdout=child, stderr=child, env=env
    )
    os.close(child)
    out = bytearray()
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the terminal's other end has closed
            break
        if not chunk:
            break
        out += chunk
        if arrivals is not None:
            arrivals.append((time.monotonic(), chunk))
    os.close(main)
    assert proc.wait(timeout=60) == 0, out[-3000:].decode(errors="replace")
    return bytes(out)


def test_on_a_terminal_a_run_through_timeouts_redraws_its_bar_twice_per_event_at_most(server_factory, tmp_path):
    """`refed synthesize` on a pseudo-terminal against a server hanging 15% of requests past a 1 s timeout, in one
    slot: the bar is redrawn at most twice per event of the run (a piece of work ending or a retry's time coming, and
    a redraw it held back). The loop used to spin while a retry waited for the slot, redrawing at every turn: about
    10,000 redraws (1.2 MB) here, 4,000 a second."""
    srv = server_factory(rate_hang=0.15, hang_s=1.5, latency_s=0.2, seed=1)  # seed 1: 5 of its first 25 requests hang
    run = tmp_path / "run"
    extra = {"synthesis.concurrency": 1, "teacher.timeout": 1, "teacher.num_retries": 3, "seeds.limit": 2}
    overrides = [o for o in run_overrides(srv, run, 8, **extra) if o != "run.progress=false"] + ["run.progress=true"]
    out = _on_a_terminal(["synthesize", *(x for o in overrides for x in ("--set", o))]).decode(errors="replace")
    summary = json.loads((run / "summary.json").read_text())
    usage, retries = summary["usage"], summary["retries"]["total"]
    assert usage["interrupted_calls"] > 0, "no request hung: the test would show nothing"
    events = usage["calls"] + usage["cached_calls"] + usage["failed_calls"] + retries
    redraws = _redraws(out)
    assert 0 < redraws <= 2 * events + 5, (redraws, events)


QUICKSTART = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "quickstart.toml")


def _quickstart(srv, run) -> list[str]:
    """The issue's plain run: the quickstart config, 30 samples in 2 slots, teacher and judge at the loopback server."""
    over = [
        f"teacher.api_base='{srv.api_base}'",
        "teacher.api_key_env=''",
        f"judge.api_base='{srv.api_base}'",
        "judge.api_key_env=''",
        f"run.dir='{run}'",
        "synthesis.size=30",
        "synthesis.concurrency=2",
        "run.progress=true",
    ]
    return ["synthesize", "--config", QUICKSTART, *(x for o in over for x in ("--set", o))]


def test_a_plain_run_on_a_terminal_redraws_its_line_as_it_goes_at_most_five_times_a_second(server_factory, tmp_path):
    """Issue 69: the quickstart run on a pseudo-terminal nobody sized (0 rows, 0 columns: `script` without a terminal)
    showed nothing from its first line to its summary (tqdm hid its bar below a screen of -1 rows). Now its line is
    redrawn while the run goes, naming the stage and the count, at most 5 times in any second."""
    srv = server_factory(latency_s=0.3)
    arrivals: list[tuple[float, bytes]] = []
    out = _on_a_terminal(_quickstart(srv, tmp_path / "run"), sized=False, arrivals=arrivals).decode(errors="replace")
    before_summary = out.split("run " + str(tmp_path / "run"))[0]
    drawn = [part for part in re.split(r"\r(?!\n)", before_summary)[1:]]
    assert len(drawn) >= 5, out[-2000:]
    assert any(re.search(r"writing responses \(\d running\); \d+/30 samples, .*ETA \w+", d) for d in drawn), drawn
    times = [t for t, chunk in arrivals for _ in re.finditer(rb"\r(?!\n)", chunk)]
    # at most 5 in any second: read in chunks, two draws 0.2 s apart may arrive together, so count by windows of 1 s
    # with one draw of slack for a chunk that held a late one
    busiest = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
    assert busiest <= 6, busiest


def test_a_plain_run_with_stderr_to_a_file_writes_lines_without_redraw_codes(server_factory, tmp_path):
    """The same run with stderr sent to a file: status lines (every progress_every_s), no carriage return, no escape."""
    srv = server_factory(latency_s=0.05)
    err = tmp_path / "err.txt"
    args = _quickstart(srv, tmp_path / "run") + ["--set", "run.progress_every_s=0.5"]
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "true"}
    with err.open("w") as sink:
        code = subprocess.call([sys.executable, "-m", "refed_dspy.cli", *args], stdout=sink, stderr=sink, env=env)
    text = err.read_text()
    assert code == 0, text[-2000:]
    assert "\r" not in text and "\x1b" not in text
    assert any(line.startswith("synthesize: ") and "/30 samples" in line for line in text.splitlines()), text[-2000:]


def test_a_status_that_fails_never_breaks_the_command(monkeypatch):
    """A status function that raises (a figure not there yet) draws a line saying so; the update goes on."""
    screen = _Terminal()
    monkeypatch.setattr(progress_module, "console", lambda: screen)
    clock = _Clock()
    bar = Progress(total=10, clock=clock)

    def broken() -> str:
        raise KeyError("stage")

    bar.stage_of = broken
    clock.now += 1.0
    assert bar.update(1, Totals(), 0) is None
    bar.close()
    assert "(no figures: KeyError)" in screen.getvalue()


def test_before_the_first_item_the_line_shows_no_rate():
    """The newcomer trial: '0/10 samples, 0.00/s' for the first minute read as a stalled run. Before this invocation's
    first item the line says none is done yet; a resumed run's earlier items do not count as this invocation's."""
    clock = _Clock()
    bar = Progress(total=10, initial=4, clock=clock, enabled=False)
    clock.now += 45.0
    assert "4/10 samples, no sample done yet this time, ETA unknown," in bar.line() and "/s" not in bar.line(), (
        bar.line()
    )
    bar.update(5, Totals(), 0)
    clock.now += 5.0
    assert "5/10 samples, 1.20/min, ETA unknown," in bar.line(), bar.line()  # one item in the 50 s since the start
    done = Progress(total=10, initial=10, clock=clock, enabled=False)  # a complete run resumed: nothing left to do
    assert "10/10 samples, 0.00/s, ETA done," in done.line(), done.line()


def test_the_eta_waits_for_a_pace_not_one_sample():
    """A pipeline's first sample after 30 s, the next ones much later (the newcomer trial: 'ETA 9m30s', then '19m',
    then '28m30s' for a run of 4 minutes): no ETA until two items came after the first, then one from their pace."""
    clock = _Clock()
    bar = Progress(total=20, clock=clock, enabled=False)
    clock.now += 30.0
    bar.update(1, Totals(), 0)
    clock.now += 60.0
    assert "ETA unknown" in bar.line()
    bar.update(2, Totals(), 0)
    assert "ETA unknown" in bar.line()
    clock.now += 10.0
    bar.update(3, Totals(), 0)
    assert "ETA 9m55s" in bar.line(), bar.line()  # 2 items in the 70 s since the first: 17 left at 35 s each
