"""How an LM-bound command (synthesize, judge, meta-eval; compare through them) starts: its plan resolved once, before
the run dir is touched (a cost budget's price, the LM online or the provider's batch API, its key checked, or on Ray the
workers started and checked), then, once the run dir is held, its cache and its one transport (plan.py): here
(refed_dspy.engine.transport.LocalTransport) or on Ray (refed_dspy.launch.ray.pool). Stages take the transport they are
given and never ask where they run."""
