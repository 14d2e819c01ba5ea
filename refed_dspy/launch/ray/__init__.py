"""Scale-out on Ray (the optional [ray] extra): the run's driver here, its LM calls on a cluster's workers.

Ray is a transport beside the local one, not a second engine: the driver's engine plans, reserves every task's
worst case against the run's one budget and writes the run dir; a worker runs one task's part of the program with
its own LM (built from the config, its key read on its node) and streams back each call as it happens. Nothing in
this package imports Ray at import time: `connect` does, and says in one line when the extra is missing.
"""
