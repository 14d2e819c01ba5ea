"""Which error a task ends with when its concurrent calls fail in different ways (`deciding_error`)."""

from __future__ import annotations

import asyncio

import pytest
from dspy.utils.exceptions import LMInvalidRequestError, LMServerError
from loopback_server import FILTERED

from refed_dspy.engine.failures import classify, deciding_error, gather_settled
from refed_dspy.errors import KeyProviderError


def _server() -> LMServerError:
    return LMServerError(message="injected 500", status=500)


def _filtered() -> LMInvalidRequestError:
    return LMInvalidRequestError(message=FILTERED, status=400)


async def _raise(err: BaseException) -> None:
    await asyncio.sleep(0)
    raise err


async def _answer() -> str:
    return "ok"


def test_the_errors_are_what_the_engine_reads_them_as():
    assert classify(_server()).retryable and not classify(_server()).final
    assert classify(_filtered()).reason == "content_filter" and classify(_filtered()).final


def test_a_task_that_needs_every_reply_ends_with_the_failure_a_retry_would_meet_again():
    """A sibling's 5xx, listed first, must not make the engine retry a task whose other call is filtered for good."""
    with pytest.raises(LMInvalidRequestError):
        asyncio.run(gather_settled(_raise(_server()), _raise(_filtered()), _answer()))
    two = [_server(), _server()]
    assert deciding_error(two) is two[0]  # only retryable ones: the first


def test_a_task_that_can_use_any_reply_ends_with_the_failure_a_retry_may_get_past():
    server, filtered = _server(), _filtered()
    assert deciding_error([filtered, server], partial=True) is server
    assert deciding_error([filtered, server]) is filtered


def test_a_fatal_failure_or_a_cancellation_decides_whatever_its_place():
    refused, server, filtered = KeyProviderError("key bound for another host"), _server(), _filtered()
    for partial in (False, True):
        assert deciding_error([server, filtered, refused], partial=partial) is refused
    stop = asyncio.CancelledError()
    assert deciding_error([refused, stop]) is stop
    with pytest.raises(ValueError):
        deciding_error([])
