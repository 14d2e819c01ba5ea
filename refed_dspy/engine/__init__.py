"""The execution engine: how every LM-bound command runs its calls (scheduler.py), online or by provider
batches (batch.py, batch_api.py, batch_store.py)."""

from refed_dspy.engine.scheduler import Engine, Limits, Stage

__all__ = ["Engine", "Limits", "Stage"]
