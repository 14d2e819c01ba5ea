"""The optimize runner: `refed optimize` and `refed_dspy.optimize` resolve an OptimizePlan (plan.py), make its
examples (examples.py), compile the program against the judge on one ledger, keep the better program (program_choice.py), save
and track it (files.py, tracking.py, result.py): run.py."""
