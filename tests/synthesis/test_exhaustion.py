"""A size the references cannot give ends as `exhausted` after a bounded number of calls, said in one line."""

from __future__ import annotations

import json

from cli_helpers import run_refed, sets
from conftest import run_overrides
from loopback_server import LoopbackServer, ServerConfig, read_log

from refed_dspy.synthesis.next_work import YieldWatch


def test_the_watch_trips_on_a_full_window_of_discards_only():
    watch = YieldWatch(0.05, window=20)
    for _ in range(19):
        watch.note(False)
    assert not watch.exhausted  # the window is not full yet
    watch.note(False)
    assert watch.exhausted and "20 of the last 20" in watch.reason


def test_a_normal_share_of_duplicates_never_trips_it():
    watch = YieldWatch(0.05, window=20)
    for i in range(1000):
        watch.note(i % 3 == 0)  # two of three discarded, one kept
    assert not watch.exhausted


def test_min_yield_zero_never_stops():
    watch = YieldWatch(0.0, window=5)
    for _ in range(50):
        watch.note(False)
    assert not watch.exhausted


def test_an_impossible_size_stops_as_exhausted_under_a_call_bound(tmp_path):
    """4 references and a teacher that keeps saying the same things (every list it gives holds the same items): every
    instruction after the first is dropped by dedup. Without the stop, size 10^12 ran until killed."""
    with LoopbackServer(ServerConfig(log_path=str(tmp_path / "log.jsonl"), extra={"same_items": True})) as srv:
        run = tmp_path / "run"
        over = run_overrides(srv, run, 10**12, **{"seeds.limit": 4, "synthesis.instructions_per_feature": 2})
        code, out, err = run_refed("synthesize", *sets(over), timeout=300)
    calls = [e for e in read_log(tmp_path / "log.jsonl") if e.get("path", "").endswith("/chat/completions")]
    summary = json.loads((run / "summary.json").read_text())
    assert code == 1, err[-2000:]
    assert summary["status"] == "exhausted" and "duplicates or rejected" in summary["exhausted"]
    said = [x for x in err.splitlines() if x.strip() and not x.startswith("loaded ")]
    assert len(said) == 1 and said[0].startswith("stopped short at") and "min_yield" in said[0], err
    assert "Traceback" not in err
    # the bound: the first pass, then at most a window of discards (100, at 2 per unit) and the calls in flight
    assert len(calls) < 400, len(calls)
    print(f"stopped after {len(calls)} calls, {summary['samples']} samples")
    assert summary["rejects"].get("duplicate", 0) + summary["rejects"].get("near_duplicate", 0) >= 100


def test_a_resumed_run_with_a_failed_reference_still_finds_the_units_left():
    """Units done in earlier passes say nothing of later ones: with one reference's feedback failed and the other's
    first 3 passes done, the next unit is the other's 4th pass, not the end of the run."""
    from types import SimpleNamespace

    from refed_dspy.methods import METHODS
    from refed_dspy.store.records import Reference
    from refed_dspy.synthesis.next_work import NextWork, unit_order

    method = METHODS.get("no_feedback")
    refs = [Reference(id=f"r{i}", instruction=f"task {i}", response=f"answer {i}", source="t") for i in range(2)]
    syn = SimpleNamespace(size=100, instructions_per_feature=2, reflection="both")
    schedule = NextWork(method, syn, refs, concurrency=2, dedup_threshold=0.7)
    schedule.feedback_failed.add("r1")
    schedule.done_units = {u.id(refs[0]) for u in unit_order(2, method.features, 3) if u.ref_index == 0}
    nxt = schedule._next_unit()
    assert nxt is not None and (nxt.ref_index, nxt.pass_no) == (0, 3)


def test_references_whose_feedback_failed_do_not_cut_the_run_short():
    """The passes a run may make count only the references that can still give units: with 5 of 8 references'
    feedback failed, the other 3 give twice the units the size needs plus 2 passes (8 passes, 48 units), not the 4
    passes 8 working references would get (a CI run under a fault-injecting server stopped `exhausted` at 18 of 30)."""
    from types import SimpleNamespace

    from refed_dspy.methods import METHODS
    from refed_dspy.store.records import Reference
    from refed_dspy.synthesis.next_work import NextWork

    method = METHODS.get("refed")
    refs = [Reference(id=f"r{i}", instruction=f"task {i}", response=f"answer {i}", source="t") for i in range(8)]
    syn = SimpleNamespace(size=30, instructions_per_feature=2, reflection="both")
    schedule = NextWork(method, syn, refs, concurrency=2, dedup_threshold=0.7)
    assert len(method.features) == 2 and schedule.pass_limit() == 2 * 1 + 2  # 32 instructions a pass
    for ref in refs[:5]:
        schedule.feedback_in(ref, None)
    assert schedule.pass_limit() == 2 * 3 + 2  # 12 instructions a pass
    units = list(iter(schedule._next_unit, None))
    assert {u.ref_index for u in units} == {5, 6, 7} and len(units) == 3 * 2 * 8
    assert max(u.pass_no for u in units) == 7


def test_a_unit_that_failed_for_good_is_done_when_the_run_resumes():
    """In the invocation that meets it, a unit that failed for good is done (not asked again, counted in the summary's
    units); a resumed run took it up again and paid for it anew, and its summary counted one unit fewer."""
    from types import SimpleNamespace

    from refed_dspy.methods import METHODS
    from refed_dspy.store.records import Reference
    from refed_dspy.store.rundir import ResumeState
    from refed_dspy.synthesis.next_work import NextWork

    method = METHODS.get("no_feedback")
    refs = [Reference(id="r0", instruction="task 0", response="answer 0", source="t")]
    syn = SimpleNamespace(size=100, instructions_per_feature=2, reflection="both")
    schedule = NextWork(method, syn, refs, concurrency=2, dedup_threshold=0.7)
    failed = schedule._next_unit().id(refs[0])
    resumed = NextWork(method, syn, refs, concurrency=2, dedup_threshold=0.7)
    resumed.restore(ResumeState(final_reject_ids={failed, "0123456789abcdef"}))  # a unit's, and a sample's
    assert resumed.done_units == {failed}
    assert resumed._next_unit().id(refs[0]) != failed
