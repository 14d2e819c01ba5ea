"""The experiment's estimate of its LM calls, from its settings alone: a call model that counts what the cache
answers as free, each optimizer replaying its algorithm on it. (How close it comes on the loopback server is
test_experiment.py's and bench/estimates.py's.)"""

from __future__ import annotations

from pathlib import Path

from refed_dspy.experiments.config import cells, load_experiment
from refed_dspy.experiments.preflight import estimate_experiment
from refed_dspy.optimizers.teleprompters import OPTIMIZERS
from refed_dspy.optimizers.teleprompters.base import CallModel, CompileSettings

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "experiment.toml"


def _estimate(grid: str, *more: str) -> tuple[list, dict]:
    settings, base = load_experiment(CONFIG, ["experiment.synthesize=0", f"experiment.grid={grid}", *more])
    grid_cells = cells(settings.grid, settings.repeats)
    return grid_cells, estimate_experiment(grid_cells, base, settings, {"train": 6, "val": 6, "test": 8})


def test_the_call_model_pays_only_what_the_cache_cannot_answer():
    m = CallModel(predictors=2, judge_calls=3, cached_baseline=True)
    m.run(m.baseline, "val", 0)  # the examples synthesis made the uncompiled program's answers: the judge alone
    assert (m.teacher, m.judge) == (0, 3)
    m.run(m.baseline, "val", 0)  # the same again: all from the cache
    assert (m.teacher, m.judge, m.evaluations) == (0, 3, 2)
    changed_last = ((0, 0), ("new instructions", 0))
    m.run(changed_last, "val", 0)  # the first predictor's answer is the baseline's: only the second is asked
    assert (m.teacher, m.judge) == (1, 6)
    changed_first = (("new instructions", 0), (0, 0))
    m.run(changed_first, "val", 0)  # the second predictor's input changed with the first's output: both asked
    assert (m.teacher, m.judge) == (3, 9)
    uncached = CallModel(predictors=2, judge_calls=1)
    uncached.run(uncached.baseline, "train", 0)
    assert (uncached.teacher, uncached.judge) == (2, 1)


def test_the_estimate_counts_the_judge_calls_the_metric_makes():
    """A cell whose win weighs nothing (optimize.win_weight = 0) is estimated at one judge call per judged run, not
    three: its metric asks no comparison with the draft; its teacher calls are the same."""
    grid, found = _estimate("{'optimize.win_weight' = [0.3, 0.0]}")
    weighted, unweighted = (found["roles"][c.id] for c in grid)
    assert weighted["teacher"] == unweighted["teacher"] > 0
    assert (
        abs(weighted["judge"] - 3 * unweighted["judge"]) <= 3 and unweighted["judge"] > 0
    )  # means of 5 draws, rounded


def test_a_program_two_optimizers_reach_is_paid_once():
    """bootstrap's program is random search's unshuffled candidate (the same traces pass in the same order): after a
    bootstrap cell, random search pays nothing for that candidate, so it is estimated at less than on its own."""
    grid, both = _estimate("{'optimize.optimizer' = ['bootstrap', 'bootstrap_random_search']}")
    after = both["optimize"][grid[1].id]
    alone_grid, alone = _estimate("{'optimize.optimizer' = ['bootstrap_random_search']}")
    assert after < alone["optimize"][alone_grid[0].id]
    # and the validation scoring of the uncompiled program, which every cell of one baseline starts with
    assert both["optimize"][grid[0].id] > 0 and both["baselines"] == alone["baselines"]


def test_every_optimizer_gives_a_range_around_its_estimate():
    """Each end of the range is the mean of as many draws at its odds (a quarter, three quarters of the traces pass)
    as the estimate has at even odds: random search, whose count follows the traces that pass, has a range about its
    estimate on both sides."""
    s = CompileSettings(lm=None, proposer_lm=None, n_train=10, n_val=8, max_demos=2, auto="light")
    for name in ("bootstrap", "bootstrap_random_search", "miprov2", "gepa", "simba"):
        grid, found = _estimate(f"{{'optimize.optimizer' = ['{name}']}}")
        cell = grid[0].id
        assert found["least"][cell] <= found["optimize"][cell] <= found["most"][cell], name
        if name == "bootstrap_random_search":
            assert found["least"][cell] < found["optimize"][cell] < found["most"][cell], found
        m = CallModel(predictors=2, judge_calls=3, cached_baseline=True)
        OPTIMIZERS.get(name).simulate(m, s)
        assert m.calls > 0, name
