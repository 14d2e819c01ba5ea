"""The execution engine: how every LM-bound command runs its calls, online or by provider batches.

execution.py (the window of calls in flight, budget reservations, retries, AIMD, the failure streak, the stop on a
signal), stage.py (the base of every stage: its role's LM and limits, the guarded call, the end of a run),
batch.py, batch_api.py, batch_store.py (provider batches), budget.py, failures.py, progress.py. Whether a stage runs
online or by batches is decided when it is launched (refed_dspy.launch).
"""
