"""MLflow's DSPy callback, handed each failed call's exception with the keys the process holds masked out of it.

MLflow records a failed call's exception as a span event (its message and traceback); a span processor cannot edit an
event once it is added, and a gateway's error may quote the request's key (a 500 that echoes its headers). So the
callback refed hands DSPy is MLflow's own with its `on_*_end` hooks given a masked stand-in for such an exception: the
same type name and the masked message, without the traceback that quoted the key.
"""

from __future__ import annotations

import traceback
from typing import Any

from mlflow.dspy.callback import MlflowCallback

from refed_dspy.secrets import mask


def masked_error(err: BaseException | None) -> BaseException | None:
    """`err` itself when neither its message nor its traceback (its causes included) holds a key the process holds;
    else a stand-in of the same type name whose message is the masked one."""
    if err is None:
        return None
    text = str(err)
    whole = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    if mask(text) == text and mask(whole) == whole:
        return err
    stand_in = type(type(err).__name__, (Exception,), {"__module__": type(err).__module__})
    return stand_in(mask(text))


class MaskedMlflowCallback(MlflowCallback):
    """MlflowCallback whose span events never hold a key (see the module docstring)."""

    def on_module_end(self, call_id: str, outputs: Any | None, exception: Exception | None = None) -> None:
        super().on_module_end(call_id, outputs, masked_error(exception))

    def on_lm_end(self, call_id: str, outputs: Any | None, exception: Exception | None = None) -> None:
        super().on_lm_end(call_id, outputs, masked_error(exception))

    def on_adapter_format_end(self, call_id: str, outputs: Any | None, exception: Exception | None = None) -> None:
        super().on_adapter_format_end(call_id, outputs, masked_error(exception))

    def on_adapter_parse_end(self, call_id: str, outputs: Any | None, exception: Exception | None = None) -> None:
        super().on_adapter_parse_end(call_id, outputs, masked_error(exception))

    def on_tool_end(self, call_id: str, outputs: Any | None, exception: Exception | None = None) -> None:
        super().on_tool_end(call_id, outputs, masked_error(exception))

    def on_evaluate_end(self, call_id: str, outputs: Any | None, exception: Exception | None = None) -> None:
        super().on_evaluate_end(call_id, outputs, masked_error(exception))
