"""Await concurrent LM calls so that none outlives its caller."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any


async def gather_settled(*aws: Awaitable[Any]) -> list[Any]:
    """Like asyncio.gather, but wait for every awaitable to finish before raising the first error.

    Plain gather returns at the first exception while its siblings keep running; their LM calls
    would then complete after the caller has accounted the calls, and go uncounted.
    """
    results = await asyncio.gather(*aws, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return list(results)


async def gather_kept(
    *aws: Awaitable[Any], fatal: tuple[type[BaseException], ...] = ()
) -> tuple[list[Any], list[Exception]]:
    """Wait for every awaitable; return the results of those that succeeded (in order) and the errors of the rest.

    For a composition that can use part of its work (the samples that came out of a reference): one failed call
    does not throw away its siblings. An error of a `fatal` type (a refused budget), or one that is not an
    Exception (a cancellation), is raised instead.
    """
    results = await asyncio.gather(*aws, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException) and (not isinstance(r, Exception) or isinstance(r, fatal)):
            raise r
    return [r for r in results if not isinstance(r, BaseException)], [r for r in results if isinstance(r, Exception)]
