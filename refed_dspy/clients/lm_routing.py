"""The call boundary's reach: inside one of our runs, every dspy.BaseLM that is called passes it, whoever holds it.

The LMs a run builds or is handed (teacher, judge) are behind the boundary already (refed_dspy.clients.boundary).
Others are called too: a teleprompter's prompt_model or reflection_lm, the judge of a metric a user built with
`make_metric`, the LM a user's own metric calls, an LM pinned to a predictor. A `LedgerScope` sends each of their calls
to a twin of that LM behind the boundary, on the scope's ledger:

- an LM the run `claim`s goes to the twin it names (the teacher the user handed in: the run's teacher), or to a twin
  of its own under the role it is claimed for (`optimizer`, `judge`, `metric`);
- any other LM that is not behind the boundary goes to a twin of its own under the role `metric` when it is called
  inside a metric (stage `metric`), else `other` (a copy of a claimed LM, such as MIPROv2's proposer makes of its
  prompt_model, under the role of the LM it copies);
- an LM already behind the boundary is left to its own accounting when it has one (a budget attached, or engine work
  collecting its calls); one with none (an LM a user built with `build_lm`, or a copy of it) is routed as above
  when the scope has a budget of its own.

A twin is priced by its own model (the `[prices]` table, else LiteLLM's map); under a cost budget an LM with no price is
refused, naming it. It reserves before each call on the scope's ledger (or, in the engine, reports to the collector of
the work that calls it) and keeps the LM's own history growing, as the LM would.

How calls are caught: `dspy.BaseLM.__call__` and `acall` (which every DSPy LM, and a user's BaseLM, runs), and the
boundary's own (before it counts anything: `boundary.scopes_from`), consult the scope of the caller. The scope is found in DSPy's settings (copied into the threads DSPy starts for parallel work),
else, in a thread DSPy did not start, the innermost scope open in the process. Outside every scope nothing changes.
DSPy's two methods are stood in front of only while some work routes calls (`routing`: a ledger scope open, a piece
of the engine's work under way); when the last such work returns they are DSPy's own again.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from typing import Any

import dspy

from refed_dspy.clients.boundary import CallBoundary, scopes_from
from refed_dspy.clients.calls import current_stage, current_work
from refed_dspy.clients.destination import check_begins, check_ends, endpoint_of
from refed_dspy.clients.flights import Flights
from refed_dspy.clients.lm import bounded, price_of_lm
from refed_dspy.config.lm import PriceBook

SETTINGS_KEY = "refed_ledger_scope"  # where DSPy's settings carry the scope into the threads DSPy starts
METRIC_STAGE = "metric"  # the stage a metric's own calls are made in (refed_dspy.optimizers.metrics)
# the stage a call is tagged with when nothing more precise is known, by the role of its LM
DEFAULT_STAGES = {"optimizer": "propose", "metric": METRIC_STAGE, "other": "other", "judge": "judge"}

_open: list[LedgerScope] = []  # the scopes open in this process, innermost last
_open_lock = threading.Lock()


class LedgerScope:
    """Routes the calls of LMs a run does not hold behind the boundary to twins that are; see the module docstring.

    `budget`: the CallBudget the twins reserve on (None: the engine's, whose work collects its calls itself and
    reserves their worst case; each call of a twin then carries its cost at its own model's price).
    `prices`: how a twin is priced by its own model.
    """

    def __init__(self, budget: Any = None, prices: PriceBook | None = None):
        self.budget = budget
        self.prices = prices or PriceBook()
        self._routes: dict[int, tuple[Any, Any]] = {}  # id(lm) -> (lm, the twin its calls go to); lm kept alive
        self._roles: dict[tuple, str] = {}  # what a copy of a claimed LM shares with it -> the role it was claimed for
        self._lock = threading.Lock()
        self.flights = Flights()  # the run's requests in flight: an identical one waits for its answer

    def claim(self, lm: Any, role: str, twin: Any = None) -> Any:
        """Within the scope, calls of `lm` go to `twin` (its role's LM of the run), or to a twin of `lm`'s own under
        `role`; returns the twin. A copy of `lm` made later (an optimizer deep-copies programs) takes the same role."""
        with self._lock:
            if id(lm) in self._routes and twin is None:
                return self._routes[id(lm)][1]
            twin = twin if twin is not None else self._twin(lm, role)
            self._routes[id(lm)] = (lm, twin)
            self._roles.setdefault(_settings_of(lm), role)
            return twin

    def route(self, lm: Any) -> Any | None:
        """The LM to call instead of `lm` (None: `lm` itself)."""
        found = self._routes.get(id(lm))
        if found is not None and found[0] is lm:
            return None if found[1] is lm else found[1]
        if isinstance(lm, CallBoundary) and not self._off_ledger(lm):
            return None
        with self._lock:
            found = self._routes.get(id(lm))
            if found is None or found[0] is not lm:
                role = self._roles.get(_settings_of(lm)) or ("metric" if current_stage() == METRIC_STAGE else "other")
                found = (lm, self._twin(lm, role))
                self._routes[id(lm)] = found
            return found[1]

    def _off_ledger(self, lm: CallBoundary) -> bool:
        """Whether a call of `lm`, an LM behind the boundary, would be counted on no ledger of this scope's run: no
        budget attached and no engine work making it (a user's build_lm LM a teleprompter holds, or a copy of it such
        as MIPROv2's proposer makes of its prompt_model). Only a scope with a budget of its own takes such an LM; in
        the engine's scope the work's collector counts it already."""
        return self.budget is not None and lm.budget is None and current_work().ledger is None

    def _twin(self, lm: Any, role: str) -> Any:
        twin = bounded(lm, role, fresh=True)
        twin.default_stage = DEFAULT_STAGES.get(role, twin.default_stage)
        twin.history = getattr(lm, "history", twin.history)  # the LM's own history keeps growing, as it would
        twin.keeps_history = True
        price = price_of_lm(lm, self.prices)
        if self.budget is not None:
            twin.attach_budget(self.budget, role, price)
        else:  # the engine's work collects its calls and prices them at its role's price: this LM's carry their own
            twin.price, twin.own_price = price, True
        return twin

    def __reduce__(self) -> tuple:
        # DSPy's settings are pickled with a logged program (MLflow): the scope of this run does not travel with it
        return (_no_scope, ())

    def __deepcopy__(self, memo: dict) -> LedgerScope:
        return self

    def roles(self) -> dict[str, str]:
        """The model of each LM routed so far, by role (what a message names)."""
        return {twin.role: str(getattr(lm, "model", "?")) for lm, twin in self._routes.values() if twin is not lm}


def _settings_of(lm: Any) -> tuple:
    """What a copy of an LM shares with it (DSPy's optimizers copy LMs with another temperature or rollout_id): its
    class, model and endpoint."""
    return (type(lm).__qualname__, str(getattr(lm, "model", "")), endpoint_of(lm))


def _no_scope() -> None:
    return None


def current_scope() -> LedgerScope | None:
    """The scope of the caller: DSPy's settings' (this thread or one DSPy started), else the innermost open one."""
    scope = scope_in_settings()
    if scope is not None:
        return scope
    return _open[-1] if _open else None


@contextlib.contextmanager
def ledger_scope(scope: LedgerScope) -> Iterator[LedgerScope]:
    """Open `scope` for the block: every LM called inside it (here, in tasks started here, and in the threads DSPy
    starts) passes the call boundary; see the module docstring."""
    with _open_lock:
        _open.append(scope)
    try:
        with within(scope):
            yield scope
    finally:
        with _open_lock:
            _open.remove(scope)


@contextlib.contextmanager
def within(scope: LedgerScope) -> Iterator[LedgerScope]:
    """For the block, in this thread, the tasks started here and the threads DSPy starts (not the process's other
    threads: see `ledger_scope`), every LM called passes the call boundary through `scope`."""
    with routing(), dspy.context(**{SETTINGS_KEY: scope}):
        yield scope


def scope_in_settings() -> LedgerScope | None:
    """The scope DSPy's settings carry here (None: no run of ours is under way in this thread's context)."""
    return dspy.settings.get(SETTINGS_KEY)


def route_of(lm: Any) -> Any | None:
    """The LM to call instead of `lm` in the caller's scope (None: `lm` itself, and outside every scope)."""
    scope = current_scope()
    return scope.route(lm) if scope is not None else None


_routing = 0  # the blocks open in this process that route LMs' calls (`routing`)
_routing_lock = threading.Lock()
_dspy_calls: tuple[Any, Any] | None = None  # dspy.BaseLM's own call methods, while ours stand in front of them


@contextlib.contextmanager
def routing() -> Iterator[None]:
    """For the block, dspy.BaseLM's call methods consult the caller's scope (outside every scope they pass the call
    on unchanged), and the HTTP clients LiteLLM sends with check each request (refed_dspy.clients.destination.checking);
    when the last such block in the process ends, DSPy's own methods are back. An LM refed is never
    handed (one a user's metric builds itself) is caught only there: DSPy's callbacks cannot stop a call."""
    global _routing
    check_begins()  # what the work asks around its calls (an adapter's model lookups through LiteLLM) is checked too
    try:
        with _routing_lock:
            if _routing == 0:
                _route_dspy_calls()
            _routing += 1
        try:
            yield
        finally:
            with _routing_lock:
                _routing -= 1
                if _routing == 0:
                    _restore_dspy_calls()
    finally:
        check_ends()


def _route_dspy_calls() -> None:
    global _dspy_calls
    base_call, base_acall = dspy.BaseLM.__call__, dspy.BaseLM.acall

    @functools.wraps(base_call)
    def __call__(self, *args, **kwargs):  # noqa: N807 - the method it stands in front of
        other = route_of(self)
        return base_call(self, *args, **kwargs) if other is None else other(*args, **kwargs)

    @functools.wraps(base_acall)
    async def acall(self, *args, **kwargs):
        other = route_of(self)
        return await (base_acall(self, *args, **kwargs) if other is None else other.acall(*args, **kwargs))

    _dspy_calls = (base_call, base_acall)
    dspy.BaseLM.__call__, dspy.BaseLM.acall = __call__, acall


def _restore_dspy_calls() -> None:
    global _dspy_calls
    if _dspy_calls is not None:
        dspy.BaseLM.__call__, dspy.BaseLM.acall = _dspy_calls
        _dspy_calls = None


scopes_from(current_scope)  # an LM behind the boundary asks before its call is counted (refed_dspy.clients.boundary)
