"""How the asks get tuned: DSPy optimizers against the judge metric (or your own).

metrics.py (JudgeMetric, CountingMetric for a user's metric, make_metric), examples.py
(examples from a run dir, split by reference), compile.py (BootstrapFewShot, random search, MIPROv2, GEPA,
SIMBA, or a teleprompter instance; scores before and after; the call/cost guard and the metric-failure rule
stop it); a compiled program is saved and loaded by refed_dspy.programs.saved (program.json with the resolved config;
loading a whole pipeline or its per-instruction part from a file or an MLflow model URI). The optimize runner drives
them for `refed optimize` and `refed_dspy.optimize` (run.py): it resolves an OptimizePlan and finds every LM the
optimization holds (plan.py), makes its examples (examples.py), compiles the program against the judge on one ledger
(compile.py), keeps the better program, saves and tracks it (outputs.py).
"""

from refed_dspy.optimizers.compile import OptimizationStopped, evaluate, evaluate_detailed
from refed_dspy.optimizers.compile import optimize as compile_program
from refed_dspy.optimizers.examples import examples_from_run, split_examples
from refed_dspy.optimizers.metrics import TARGETS, CountingMetric, JudgeMetric, make_metric
from refed_dspy.programs.saved import instructions_text, load_program, load_state_into, save_program

__all__ = [
    "TARGETS",
    "CountingMetric",
    "JudgeMetric",
    "OptimizationStopped",
    "compile_program",
    "evaluate",
    "evaluate_detailed",
    "examples_from_run",
    "instructions_text",
    "load_program",
    "load_state_into",
    "make_metric",
    "save_program",
    "split_examples",
]
