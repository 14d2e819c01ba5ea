"""Classify an exception from one work item into a reject reason, or a fatal run error."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from dspy.utils.exceptions import (
    AdapterParseError,
    ContextWindowExceededError,
    LMAuthError,
    LMBillingError,
    LMError,
    LMInvalidRequestError,
    LMNotConfiguredError,
    LMRateLimitError,
    LMUnsupportedFeatureError,
    LMUnsupportedModelError,
    is_retryable_lm_error,
)
from pydantic import ValidationError

from refed_dspy.adapters import DegenerateOutputError, describe_parse_error
from refed_dspy.clients.calls import LMOutputError, OutputRefused, OutputTruncated, ReplyFormatError
from refed_dspy.clients.tries import gave_up_waiting, never_connected, retry_after_s, stopped_waiting
from refed_dspy.errors import KeyProviderError
from refed_dspy.ledger.budget import BudgetExceeded
from refed_dspy.secrets import first_line

RAW_CHARS = 2000  # of what the LM returned, kept in a reject record


@dataclass(frozen=True)
class Failure:
    """How an item failed. `final` rejects are not retried on resume; `fatal` ones stop the run;
    `retryable` ones (429, 5xx, timeouts, connection errors) the runner retries after `retry_after`
    seconds when given (the provider's Retry-After), else with backoff. `raw` is the start of what the
    LM returned, when it returned something unusable. One not `counted` (a service tier with no capacity now)
    neither counts toward the consecutive-failure abort nor ends a streak."""

    reason: str
    detail: str
    final: bool = True
    fatal: bool = False
    retryable: bool = False
    retry_after: float | None = None
    raw: str | None = None
    counted: bool = True  # counts toward the consecutive-failure abort (no capacity on a service tier does not)

    def record_fields(self) -> dict[str, Any]:
        """The fields a reject record keeps of this failure."""
        out: dict[str, Any] = {"reason": self.reason, "detail": self.detail, "final": self.final}
        if self.raw is not None:
            out["raw"] = self.raw
        return out


def _raw(text: Any) -> str | None:
    if text is None:
        return None
    return (text if isinstance(text, str) else str(text))[:RAW_CHARS]


# LiteLLM's words for a model whose provider it cannot place (DSPy hands it what its own client does not route)
_NO_PROVIDER = "LLM Provider NOT provided"
# no such endpoint (or not for POST): every call will get the same answer
_NOT_FOUND = (404, 405)


def _seconds(detail: str) -> str:
    """` of 1s` from DSPy's read-timeout message (its own advice names a client API a config does not set)."""
    found = re.search(r"no bytes for ([0-9.]+)s", detail)
    return f" of {found.group(1)}s" if found else ""


def classify(err: BaseException) -> Failure:
    """Map an exception raised while processing one item to a Failure."""
    detail = first_line(err)
    if isinstance(err, KeyProviderError):  # the HTTP layer refused to send a key where it must not go: the config's
        return Failure("key_refused", detail, final=False, fatal=True)
    if isinstance(err, BudgetExceeded):  # a call's counted prompt needed more than the budget had left: kept for later
        return Failure("budget", detail, final=False)
    if isinstance(err, OutputTruncated):
        return Failure("truncated", detail, raw=_raw(err.raw))
    if isinstance(err, OutputRefused):
        return Failure("refused", detail, raw=_raw(err.raw))
    if isinstance(err, ReplyFormatError):
        return Failure("wrong_format", detail, final=False, fatal=True)
    if isinstance(err, LMOutputError):
        return Failure("invalid_output", detail, raw=_raw(err.raw))
    if isinstance(err, DegenerateOutputError):
        return Failure("degenerate", describe_parse_error(err)[:500], raw=_raw(err.lm_response))
    if isinstance(err, AdapterParseError):
        return Failure("unparseable", describe_parse_error(err)[:500], raw=_raw(err.lm_response))
    if isinstance(err, ContextWindowExceededError):
        return Failure("context_window", detail)
    if isinstance(err, (LMAuthError, LMNotConfiguredError)):
        return Failure("auth", f"the provider rejected the credentials: {detail}", final=False, fatal=True)
    if isinstance(err, LMBillingError):
        return Failure("billing", f"the provider refused for billing or quota: {detail}", final=False, fatal=True)
    if isinstance(err, LMUnsupportedFeatureError):
        return Failure(
            "unsupported",
            f"the model's client cannot send this request (check the role's extra settings): {detail}",
            final=False,
            fatal=True,
        )
    if isinstance(err, LMUnsupportedModelError):
        return Failure("unknown_model", f"the provider does not serve this model: {detail}", final=False, fatal=True)
    if isinstance(err, LMInvalidRequestError) and getattr(err, "status", None) in _NOT_FOUND:
        return Failure("not_found", f"HTTP {err.status}: {detail}", final=False, fatal=True)
    if isinstance(err, LMInvalidRequestError) and _NO_PROVIDER in str(err):
        return Failure("unknown_provider", detail, final=False, fatal=True)
    if isinstance(err, LMInvalidRequestError):
        low = detail.lower()
        if "content" in low and ("filter" in low or "policy" in low or "management" in low):
            return Failure("content_filter", detail)
        return Failure("invalid_request", detail)
    if isinstance(err, LMError) and getattr(err, "tier_unavailable", False):  # marked by the call boundary
        return Failure(
            "tier_unavailable",
            f"the service tier asked for had no capacity, after the call boundary's waits: {detail}",
            final=False,
            retryable=True,
            retry_after=retry_after_s(err),
            counted=False,
        )
    if isinstance(err, LMRateLimitError):
        return Failure("rate_limited", detail, final=False, retryable=True, retry_after=retry_after_s(err))
    if isinstance(err, LMError) and never_connected(err):
        return Failure("unreachable", f"nothing answered at the endpoint: {detail}", final=False, retryable=True)
    if isinstance(err, LMError) and gave_up_waiting(err) and not stopped_waiting(err):
        status = getattr(err, "status", None)
        return Failure(
            "provider_timeout",
            f"the provider timed out{f' (HTTP {status})' if status else ''}; counted as paid: {detail}",
            final=False,
            retryable=True,
            retry_after=retry_after_s(err),
        )
    if isinstance(err, LMError) and gave_up_waiting(err):
        return Failure(
            "timeout",
            f"no reply within the LM's timeout{_seconds(detail)}; counted as paid (the provider may have answered it)",
            final=False,
            retryable=True,
            retry_after=retry_after_s(err),
        )
    if isinstance(err, LMError):
        return Failure(
            "api_error", detail, final=False, retryable=is_retryable_lm_error(err), retry_after=retry_after_s(err)
        )
    if isinstance(err, (ValidationError, ValueError)):
        return Failure("invalid_output", detail)
    return Failure("internal_error", f"{type(err).__name__}: {detail}", final=False)


# what to try when a run keeps failing for one reason
_HINTS = {
    "truncated": "raise {role}.max_tokens, or ask for shorter outputs",
    "unparseable": 'try {role}.adapter = "json_schema" (a server that enforces schemas), more {role}.max_repairs, '
    "or a stronger model",
    "invalid_output": "try a stronger model",
    "degenerate": "the model echoes the format or its inputs instead of answering: try a stronger model, "
    'or {role}.adapter = "json_schema"',
    "refused": "the provider refuses this content; check the seeds",
    "content_filter": "the provider filters this content; check the seeds",
    "timeout": "the LM did not answer within its timeout: raise {role}.timeout if the model needs longer, or lower "
    "the concurrency a slow server is given",
    "tier_unavailable": "the flex tier kept having no capacity: set {role}.flex_fallback to send such requests on the "
    "default tier, or resume later",
    "context_window": "the prompts do not fit the model's context: use a model with a longer context or shorter seeds",
}


def hint_for(reason: str, role: str = "teacher") -> str | None:
    """What to try when `role`'s outputs keep failing for `reason` (None: nothing to name)."""
    hint = _HINTS.get(reason)
    return hint.format(role=role) if hint else None


class FailureStreak:
    """Consecutive failed items, of any kind (API errors after retries, and final rejects of the LM's output
    alike); a success resets it. At `limit` in a row, or at once for a fatal failure, `note` returns the
    Failure that aborts the run (resumable): its detail names the count, the last reason and what to try."""

    def __init__(self, limit: int, what: str = "LM", role: str = "teacher"):
        self.limit, self.what, self.role = limit, what, role
        self.count = 0
        self.reasons: dict[str, int] = {}

    def note(self, failure: Failure | None) -> Failure | None:
        """Count one finished item (None: it succeeded); the abort Failure when the run must stop."""
        if failure is None:
            self.count, self.reasons = 0, {}
            return None
        if failure.fatal:
            return failure
        if not failure.counted:
            return None
        self.count += 1
        self.reasons[failure.reason] = self.reasons.get(failure.reason, 0) + 1
        if self.count < self.limit:
            return None
        kinds = ", ".join(f"{n} {r}" for r, n in sorted(self.reasons.items(), key=lambda kv: -kv[1]))
        hint = hint_for(failure.reason, self.role)
        hint = f"; {hint}" if hint else ""
        return Failure(
            "too_many_failures",
            f"{self.count} consecutive {self.what} failures ({kinds}), the last: {failure.detail}{hint}",
            final=False,
            fatal=True,
        )
