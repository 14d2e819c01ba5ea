"""Classify an exception from one work item into a reject reason, or a fatal run error."""

from __future__ import annotations

from dataclasses import dataclass

from dspy.utils.exceptions import (
    AdapterParseError,
    ContextWindowExceededError,
    LMAuthError,
    LMBillingError,
    LMError,
    LMInvalidRequestError,
    LMNotConfiguredError,
    LMRateLimitError,
    LMUnsupportedModelError,
    is_retryable_lm_error,
)
from pydantic import ValidationError

from refed_dspy.lm import OutputRefused, OutputTruncated


@dataclass(frozen=True)
class Failure:
    """How an item failed. `final` rejects are not retried on resume; `fatal` ones stop the run;
    `retryable` ones (429, 5xx, timeouts, connection errors) the runner retries after `retry_after`
    seconds when given (the provider's Retry-After), else with backoff."""

    reason: str
    detail: str
    final: bool = True
    fatal: bool = False
    retryable: bool = False
    retry_after: float | None = None


def _first_line(err: BaseException, limit: int = 300) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:limit]


def _retry_after(err: BaseException) -> float | None:
    value = getattr(err, "retry_after", None)
    try:
        return max(0.0, min(float(value), 300.0)) if value is not None else None
    except (TypeError, ValueError):
        return None


def classify(err: BaseException) -> Failure:
    """Map an exception raised while processing one item to a Failure."""
    detail = _first_line(err)
    if isinstance(err, OutputTruncated):
        return Failure("truncated", detail)
    if isinstance(err, OutputRefused):
        return Failure("refused", detail)
    if isinstance(err, AdapterParseError):
        return Failure("unparseable", detail)
    if isinstance(err, ContextWindowExceededError):
        return Failure("context_window", detail)
    if isinstance(err, (LMAuthError, LMNotConfiguredError)):
        return Failure("auth", f"the provider rejected the credentials: {detail}", final=False, fatal=True)
    if isinstance(err, LMBillingError):
        return Failure("billing", f"the provider refused for billing or quota: {detail}", final=False, fatal=True)
    if isinstance(err, LMUnsupportedModelError):
        return Failure("unknown_model", f"the provider does not serve this model: {detail}", final=False, fatal=True)
    if isinstance(err, LMInvalidRequestError):
        low = detail.lower()
        if "content" in low and ("filter" in low or "policy" in low or "management" in low):
            return Failure("content_filter", detail)
        return Failure("invalid_request", detail)
    if isinstance(err, LMRateLimitError):
        return Failure("rate_limited", detail, final=False, retryable=True, retry_after=_retry_after(err))
    if isinstance(err, LMError):
        return Failure("api_error", detail, final=False, retryable=is_retryable_lm_error(err), retry_after=_retry_after(err))
    if isinstance(err, (ValidationError, ValueError)):
        return Failure("invalid_output", detail)
    return Failure("internal_error", f"{type(err).__name__}: {detail}", final=False)
