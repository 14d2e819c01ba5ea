"""Students answering through a server: an OpenAI-compatible server (vLLM, llama.cpp's llama-server, SGLang) that
serves each student under a name of its own (`[evaluate] server`, `student_model`, `baseline_model`), asked for each
answer greedily by an LM of refed's (its endpoint and key checked as every LM's are: the key of
`[evaluate] api_key_env`, none by default), `[evaluate] batch_size` at a time. No response cache: a student trained
again and served under the same name answers anew. An answer cut off at `max_new_tokens` is kept as the server wrote
it, as a student answering in refed's process keeps it."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from refed_dspy.clients.calls import OutputRefused, OutputTruncated
from refed_dspy.clients.tries import retry_delay_s
from refed_dspy.config import Config
from refed_dspy.config.lm import LMSpec
from refed_dspy.config.training import EvaluateConfig
from refed_dspy.engine.failures import Failure, classify
from refed_dspy.errors import ConfigError, RefedError, RunAborted
from refed_dspy.launch.plan import held_lm

RETRIES = 3  # a busy server's (429, 5xx) answer asked again
WRITING = ("timeout", "provider_timeout")  # ... but not one it (or a proxy before it) timed out on: it may be writing


def served_model(config: Config, role: str) -> str:
    """The name the server serves the side `role` ('student', 'baseline') under."""
    ev = config.evaluate
    return ev.student_model if role == "student" else ev.baseline_model


def served_lm(config: Config, role: str, max_tokens: int | None = None) -> Any:
    """The LM that asks the server for the answers of the side `role`: greedy, `max_new_tokens` (or `max_tokens`), no
    response cache; its key and endpoint checked as `[evaluate]`'s (MissingKeyError, KeyProviderError)."""
    ev = config.evaluate
    spec = LMSpec(
        model=f"openai/{served_model(config, role)}",
        api_base=ev.server,
        api_key_env=ev.api_key_env,
        temperature=0.0,
        max_tokens=max_tokens or ev.max_new_tokens,
        timeout=ev.timeout,
        num_retries=0,  # `_asked` asks again, a busy server only
        extra={"cache": False},
    )
    return held_lm(spec, "evaluate")


def check_served(config: Config, roles: list[str]) -> None:
    """Ask the server for one token under each side's name before any answer is kept, so that a name it does not
    serve (a typo in baseline_model) is refused before the other side's answers fix the folder's plan: the error
    `served_answers` would give (ConfigError, RunAborted)."""
    for role in roles:
        lm = served_lm(config, role, max_tokens=1)
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
