"""What the viewer accepts from a request: query values (numbers, counts, the list's filters) and the Host or Origin a
page reached it by."""

from __future__ import annotations

import math
from typing import Any

from refed_dspy.view.index import Filters

LOOPBACK = ("127.0.0.1", "localhost", "::1")  # the only names a page may reach the viewer by


class BadQuery(ValueError):
    """A query value the viewer cannot use (answered 400)."""


def _number(value: str | None, name: str = "value") -> float | None:
    """A finite number from a query value ('' or absent: None); BadQuery otherwise (nan, inf, 1e400, words)."""
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except ValueError:
        raise BadQuery(f"{name}={value!r} is not a number") from None
    if not math.isfinite(number):
        raise BadQuery(f"{name}={value!r} is not a finite number")
    return number


def whole_number(value: str | None, name: str, default: int, low: int, high: int) -> int:
    """A whole number from a query value, held within [low, high] (absent: `default`)."""
    number = _number(value, name)
    return default if number is None else int(min(high, max(low, number)))


def loopback_host(host: str | None) -> bool:
    """Whether an HTTP Host header (or an Origin) names this machine's loopback interface: a page that reached the
    viewer under another name (DNS rebinding) must not read the data."""
    if not host:
        return False
    netloc = host.split("://", 1)[-1].split("/", 1)[0]  # an Origin is scheme://host[:port]
    if netloc.startswith("["):  # [::1]:8765
        name = netloc[1:].split("]", 1)[0]
    else:
        name = netloc.rsplit(":", 1)[0] if ":" in netloc else netloc
    return name.lower() in LOOPBACK


def filters_from(args: Any) -> Filters:
    """The list's filters from a query string."""
    return Filters(
        q=args.get("q", ""),
        reference=args.get("reference", ""),
        feature=args.get("feature", ""),
        method=args.get("method", ""),
        verdict=args.get("verdict", ""),
        outcome=args.get("outcome", ""),
        score_min=_number(args.get("score_min"), "score_min"),
        score_max=_number(args.get("score_max"), "score_max"),
    )
