"""How the asks get tuned: DSPy optimizers against the judge metric (built in the optimization issue)."""
