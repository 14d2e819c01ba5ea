"""Which failed request reached the provider: a read timeout did, a connect or write timeout and a 408 did not."""

from __future__ import annotations

import pytest
from dspy._vendor.lm15.transports import ConnectTimeout, ReadError, ReadTimeout, WriteTimeout
from dspy.utils.exceptions import LMServerError, LMTimeoutError, LMTransportError

from refed_dspy.clients.reach import gave_up_waiting


def _wrapped(cause: BaseException) -> LMTransportError:
    """As DSPy's client raises it: its error, from lm15's, from the transport's."""
    try:
        try:
            raise cause
        except BaseException as inner:
            raise RuntimeError(str(inner)) from inner
    except RuntimeError as middle:
        err = LMTransportError(message=str(middle))
        err.__cause__ = middle
        return err


@pytest.mark.parametrize(
    ("err", "paid"),
    [
        (_wrapped(ReadTimeout("read timed out waiting for headers")), True),
        (_wrapped(ReadTimeout("read timed out mid-body")), True),
        (_wrapped(ConnectTimeout("timed out connecting")), False),
        (_wrapped(WriteTimeout("write timed out")), False),
        (_wrapped(ReadError("connection reset")), False),
        (LMTimeoutError(message="gateway timeout", status=504), True),
        (LMTimeoutError(message="request timeout", status=408), False),
        (LMServerError(message="boom", status=500), False),
    ],
)
def test_only_a_request_sent_whole_and_not_answered_in_time_is_paid(err, paid):
    assert gave_up_waiting(err) is paid
