"""How the asks get tuned: DSPy optimizers against the judge metric.

So far: metrics.py (JudgeMetric, GEPAJudgeMetric), examples.py (examples from a run dir, split by
reference) and compile.py (BootstrapFewShot and its random search). MIPROv2, GEPA, SIMBA, budgets,
MLflow logging and `refed optimize` are still to come.
"""
