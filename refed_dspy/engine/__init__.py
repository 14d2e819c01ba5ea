"""The execution engine: how every LM-bound command runs its calls, online or by provider batches.

execution.py (the window of calls in flight, budget reservations, retries, AIMD, the failure streak, the stop on a
signal), stage.py (the base of every stage: its role's LM and limits, the guarded call, the end of a run),
batch/ (provider batches), failures.py, progress.py, figures.py (the run's instruments) and metrics.py (their
export: OpenTelemetry metrics and the Prometheus endpoint); the budget it reserves calls on
is refed_dspy.ledger's. Whether a stage runs online or by batches is decided when it is launched (refed_dspy.launch).
"""
