"""Usage telemetry of the libraries we use stays off unless the user opts in (`tracking.telemetry = true`).

MLflow 3 reports usage to its servers (config.mlflow-telemetry.io) unless told not to; Hugging Face Hub
does too. Our users' runs must not phone home by default, so importing refed_dspy sets the libraries' own
opt-out variables (never overriding a value the user set), and a config that opts in removes the ones
we set before MLflow is used.
"""

from __future__ import annotations

import os

OPT_OUT = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "HF_HUB_DISABLE_TELEMETRY": "1"}
_ours: set[str] = set()


def set_telemetry(opt_in: bool = False) -> None:
    """Keep the libraries' telemetry off (default), or, with `opt_in`, leave it to them."""
    for name, value in OPT_OUT.items():
        if opt_in:
            if name in _ours and os.environ.get(name) == value:
                del os.environ[name]
            _ours.discard(name)
        elif name not in os.environ:
            os.environ[name] = value
            _ours.add(name)
