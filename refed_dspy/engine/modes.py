"""Online or batch: what a stage's LM is, checked before a run dir is touched.

Online, a stage calls its role's LM (one given from Python, else one built from the config). In batch mode the
LM is built from the config and its calls go to the provider's batch API through a broker whose records live in
the run dir, so it can only be made once the run dir is held; before that, the provider and its key are checked.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from refed_dspy.clients.boundary import bounded
from refed_dspy.clients.keys import check_key
from refed_dspy.config.lm import LMSpec
from refed_dspy.engine.batch import batch_lm
from refed_dspy.engine.batch_api import batch_provider
from refed_dspy.errors import ConfigError


def lm_before_run(spec: LMSpec, role: str, mode: str, lm: Any, build: Callable[[], Any]) -> Any:
    """Before the run dir is touched: online, the LM to call (`lm` behind the call boundary, so that a user's LM is
    counted, budgeted and checked like a built one; else `build()`); batch, None once the provider is known to have
    a batch API and its key is set, and the section asks for no service tier (ConfigError, MissingKeyError otherwise)."""
    if mode == "batch":
        if spec.service_tier != "default":  # a batch request is priced at the batch price: it asks for no tier
            raise ConfigError(
                f'{role}.service_tier = "{spec.service_tier}" is for online calls; batch mode has a price of its own '
                f'({role}.batch_price_factor): set {role}.service_tier = "default", or run online'
            )
        batch_provider(spec, role)
        check_key(spec, role)
        return None
    # the engine retries a failed piece of work itself: the LM retries nothing (each retry is a piece of work's)
    return bounded(lm, role, fresh=True).take_retries(engine_retries=True) if lm is not None else build()


def lm_in_run(
    spec: LMSpec,
    role: str,
    mode: str,
    lm: Any,
    run_dir: Path,
    settings: Any,
    *,
    detach: bool = False,
    store_name: str = "batches",
) -> tuple[Any, Any]:
    """Once the run dir is held: (the LM the stage calls, its batch broker or None). Batch mode builds the LM whose
    calls go through the broker (its store in `run_dir/store_name`; `settings`: the config's [batch] section)."""
    if mode == "batch":
        return batch_lm(spec, role, run_dir, settings, detach=detach, store_name=store_name)
    return lm, None
