"""Students answering through a server: an OpenAI-compatible server (vLLM, llama.cpp's llama-server, SGLang) that
serves each student under a name of its own (`[evaluate] server`, `student_model`, `baseline_model`), asked for each
answer greedily by an LM of refed's (its endpoint and key checked as every LM's are: the key of
`[evaluate] api_key_env`, none by default), `[evaluate] batch_size` at a time. No response cache: a student trained
again and served under the same name answers anew. An answer cut off at `max_new_tokens` is kept as the server wrote
it, as a student answering in refed's process keeps it.

The answers are paid for where the server bills them (a fine-tune on a provider's API): each is counted, and held to
`[evaluate] max_calls` and `max_cost_usd` with the judge's calls, across re-runs (`answering`: the part "answering" of
`OUT/spent.json`, each request written to `OUT/ledger/answering.jsonl` before it is sent, refed_dspy.ledger.spend),
priced by the served model's name (`[prices]`, else LiteLLM's map); a server at a private or loopback address whose
model has no price is one's own, at $0."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from refed_dspy.clients.calls import BudgetExceeded, OutputRefused, OutputTruncated
from refed_dspy.clients.tries import retry_delay_s
from refed_dspy.config import Config
from refed_dspy.config.lm import LMSpec, on_own_network
from refed_dspy.config.training import EvaluateConfig
from refed_dspy.engine.failures import Failure, classify
from refed_dspy.errors import ConfigError, FinishedShort, RefedError, RunAborted
from refed_dspy.launch.plan import held_lm
from refed_dspy.ledger.budget import CallBudget, Limit
from refed_dspy.ledger.call_log import Ledger
from refed_dspy.ledger.spend import CUT_OFF, Spend, total_of
from refed_dspy.providers.prices import Price
from refed_dspy.store.rundir import RunDir

RETRIES = 3  # a busy server's (429, 5xx) answer asked again
SPENT = "spent.json"  # what an evaluation's answering paid, across re-runs
PART = "answering"  # ... its part there
FREE = Price(0.0, 0.0, 0.0)  # one's own server's model, unpriced
WRITING = ("timeout", "provider_timeout")  # ... but not one it (or a proxy before it) timed out on: it may be writing


def served_model(config: Config, role: str) -> str:
    """The name the server serves the side `role` ('student', 'baseline') under."""
    ev = config.evaluate
    return ev.student_model if role == "student" else ev.baseline_model


def served_lm(config: Config, role: str, budget: CallBudget, max_tokens: int | None = None) -> Any:
    """The LM that asks the server for the answers of the side `role`: greedy, `max_new_tokens` (or `max_tokens`), no
    response cache, each call counted on `budget`; its key and endpoint checked as `[evaluate]`'s (MissingKeyError,
    KeyProviderError)."""
    spec = served_spec(config, role, max_tokens)
    return held_lm(spec, "evaluate").attach_budget(budget, role, served_price(config, spec))


def served_price(config: Config, spec: LMSpec) -> Price | None:
    """The price of the answers `spec` asks for: its model's (`[prices]`, else LiteLLM's map), else $0 on one's own
    server (a private or loopback address), else None (ConfigError under `[evaluate] max_cost_usd`)."""
    price = config.price_book.of(spec.model)
    if price is None and on_own_network(spec):
        return FREE
    if price is None and config.evaluate.max_cost_usd is not None:
        raise ConfigError(
            f"evaluate.max_cost_usd needs a price for the students' server's '{spec.model}' at {spec.api_base}, "
            f'which is not in the price table: price it in the config ([prices."{spec.model}"] input_usd_per_mtok '
            "and output_usd_per_mtok)"
        )
    return price


@contextmanager
def answering(config: Config, out: Path) -> Iterator[CallBudget]:
    """The budget the students' server's answers are counted on, for the block: what `[evaluate] max_calls` and
    `max_cost_usd` leave after what the evaluation's earlier invocations paid, its answers and its judge's (`left`),
    each request written to its log before it is sent; what the block paid is added to `OUT/spent.json` at its end (a
    kill's, at the next start)."""
    ev = config.evaluate
    spend = Spend(out / SPENT, CallBudget(ev.max_calls, ev.max_cost_usd))
    calls, cost = left(config, spend.part(PART), judge_paid(out))
    said = "(the students' server's answers and the judge's calls, with what earlier invocations paid)"
    budget = CallBudget(
        calls, cost, calls_from=Limit("evaluate.max_calls", said), cost_from=Limit("evaluate.max_cost_usd", said)
    )
    with spend.live(PART, budget):
        try:
            yield budget
        except KeyboardInterrupt:  # a signal: the calls in flight reached the server, and are paid
            budget.close("the evaluation was stopped by a signal")
            raise


def answering_paid(out: Path) -> dict[str, Any]:
    """What the students' server's answers of the evaluation in `out` paid over its invocations: calls, cost (and the
    most the calls a kill cut off can have cost: `interrupted_cost_usd`)."""
    return Spend(out / SPENT, CallBudget()).part(PART)


def left(config: Config, *paid: dict[str, Any] | None) -> tuple[int | None, float | None]:
    """What `[evaluate] max_calls` and `max_cost_usd` leave (None: no such cap; 0 at the least) after `paid` (usages:
    calls, cost, and the most the calls a kill cut off can have cost)."""
    ev, total = config.evaluate, total_of([u for u in paid if u])
    cost = float(total["cost_usd"] or 0.0) + float(total.get(CUT_OFF) or 0.0)
    return (
        None if ev.max_calls is None else max(0, ev.max_calls - total["calls"]),
        None if ev.max_cost_usd is None else max(0.0, ev.max_cost_usd - cost),
    )


def judge_paid(out: Path) -> dict[str, Any] | None:
    """What the judge of the evaluation in `out` paid over its invocations (None: nothing yet)."""
    judged = RunDir(out).judge_ledger
    return Ledger.read(judged).paid() if judged.exists() else None


def served_spec(config: Config, role: str, max_tokens: int | None = None) -> LMSpec:
    """The section of the LM that asks the server for the answers of the side `role`."""
    ev = config.evaluate
    return LMSpec(
        model=f"openai/{served_model(config, role)}",
        api_base=ev.server,
        api_key_env=ev.api_key_env,
        temperature=0.0,
        max_tokens=max_tokens or ev.max_new_tokens,
        timeout=ev.timeout,
        num_retries=0,  # `_asked` asks again, a busy server only
        extra={"cache": False},
    )


def check_served(config: Config, roles: list[str], budget: CallBudget) -> None:
    """Ask the server for one token under each side's name before any answer is kept, so that a name it does not
    serve (a typo in baseline_model) is refused before the other side's answers fix the folder's plan: the error
    `served_answers` would give (ConfigError, RunAborted, FinishedShort)."""
    for role in roles:
        lm = served_lm(config, role, budget, max_tokens=1)
        said = _asked(lm, "Say OK.", config.evaluate)
        if isinstance(said, RefedError):
            raise said


def served_answers(lm: Any, texts: list[str], ev: EvaluateConfig) -> list[str | RefedError]:
    """The answers of the LM `lm` to `texts`, asked at once (one thread each), each an answer or the error it met:
    RunAborted (exit 3) where the server could not answer now (unreachable, busy, timed out: resumable), ConfigError
    (exit 2) where it refused the request (a model it does not serve, its key). The threads are daemons: a stop
    (Ctrl-C, SIGTERM) leaves them to their requests at once, and the process does not wait for them to end."""
    said: list[str | RefedError] = [RunAborted("not answered")] * len(texts)

    def ask(i: int) -> None:
        said[i] = _asked(lm, texts[i], ev)

    threads = [threading.Thread(target=ask, args=(i,), daemon=True) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return said


def _asked(lm: Any, text: str, ev: EvaluateConfig) -> str | RefedError:
    """The answer of `lm` to `text`, or the error it met. A busy server (429, 5xx, a reset) is asked again, up to
    RETRIES times; a timeout, ours or a proxy's (504), is not (the server may still be writing: asking again would
    queue one more)."""
    retry = 0
    while True:
        retry += 1
        try:
            outputs = lm(text)
        except (OutputTruncated, OutputRefused) as err:  # cut off at max_new_tokens, or filtered: what it wrote, kept
            return (err.raw or "").strip()
        except BudgetExceeded as err:  # refused before it was sent
            return FinishedShort(
                f"the students' answers stopped at the evaluation's budget: {err}; raise it and run the same command "
                "(the answers made are kept)"
            )
        except RefedError as err:
            return err
        except Exception as err:  # noqa: BLE001 - the client's own error types, said in one line
            failure = classify(err)
            if failure.retryable and failure.reason not in WRITING and retry <= RETRIES:
                time.sleep(retry_delay_s(retry, random.random(), failure.retry_after))
                continue
            return _error(failure, lm.model, ev)
        first = outputs[0] if outputs else ""
        return (first.get("text", "") if isinstance(first, dict) else str(first or "")).strip()


def _error(failure: Failure, model: str, ev: EvaluateConfig) -> RefedError:
    """What a failed answer stops the evaluation with: RunAborted where the server could not answer now, ConfigError
    where it refused the request."""
    if failure.reason == "timeout":
        return RunAborted(
            f"the students' server {ev.server} did not answer '{model}' within evaluate.timeout = "
            f"{ev.timeout:g} s: raise it, or lower evaluate.batch_size (the answers made are kept)"
        )
    if failure.retryable:
        return RunAborted(f"the students' server {ev.server} did not answer '{model}': {failure.detail}")
    return ConfigError(f"the students' server {ev.server} refused '{model}': {failure.detail}")
