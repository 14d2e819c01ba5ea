"""How the asks get tuned: DSPy optimizers against the judge metric.

metrics.py (JudgeMetric, GEPAJudgeMetric), examples.py (examples from a run dir, split by
reference), compile.py (BootstrapFewShot, random search, MIPROv2, GEPA, SIMBA; scores before and
after; the call/cost guard stops it) and program_io.py (program.json with the resolved config;
loading from a file or an MLflow model URI). `refed_dspy.optimize_run` drives them for `refed optimize`.
"""
