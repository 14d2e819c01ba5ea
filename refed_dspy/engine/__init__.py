"""The execution engine: how every LM-bound command runs its calls, online or by provider batches.

execution.py (the engine: budget reservations, retries, the failure streak, the stop on a signal, and where its
answers come from), window.py (the window of calls in flight and the controller that tells a provider's rate limit
from noise), stage.py (the base of every stage: its role's LM and limits, the guarded call, the end of a run),
transport.py (where a stage's parts run: here or on Ray), watch.py (a run's figures and events, and what the place its
parts run reports), failures.py, progress.py, figures.py (the run's instruments) and metrics.py (their export:
OpenTelemetry metrics and the Prometheus endpoint); the budget it reserves calls on is refed_dspy.ledger's. Whether a
stage runs online or by batches is decided when it is launched (refed_dspy.launch).
"""
