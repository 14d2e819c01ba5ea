"""Which failed request reached the provider: a read timeout did, a connect or write timeout and a 408 did not."""

from __future__ import annotations

import pytest
from dspy._vendor.lm15.transports import ConnectTimeout, ReadError, ReadTimeout, WriteTimeout
from dspy.utils.exceptions import LMServerError, LMTimeoutError, LMTransportError

from refed_dspy.clients.tries import gave_up_waiting


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


def _through_litellm() -> LMTimeoutError:
    """A read timeout on DSPy's LiteLLM route: LiteLLM's Timeout (its own status 408) from httpx's ReadTimeout."""
    import httpx

    err = LMTimeoutError(message="litellm.Timeout: Connection timed out", status=408)
    err.__cause__ = RuntimeError("litellm.Timeout")
    err.__cause__.__cause__ = httpx.ReadTimeout("timed out")
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
        (_through_litellm(), True),
        (LMServerError(message="boom", status=500), False),
    ],
)
def test_only_a_request_sent_whole_and_not_answered_in_time_is_paid(err, paid):
    assert gave_up_waiting(err) is paid


def test_a_timeout_of_ours_and_one_of_the_providers_are_told_apart():
    """Ours names the role's timeout to raise; the provider's (a 504) names its status, not our setting."""
    from refed_dspy.engine.failures import classify, hint_for

    ours = classify(_through_litellm())
    theirs = classify(LMTimeoutError(message="gateway", status=504))
    assert (ours.reason, theirs.reason) == ("timeout", "provider_timeout")
    assert "HTTP 504" in theirs.detail and hint_for(theirs.reason) is None
    assert "raise teacher.timeout" in hint_for(ours.reason)
