"""Students answering through a server: an OpenAI-compatible server (vLLM, llama.cpp's llama-server, SGLang) that
serves each student under a name of its own (`[evaluate] server`, `student_model`, `baseline_model`), asked for each
answer greedily by an LM of refed's (its endpoint and key checked as every LM's are), `[evaluate] batch_size` at a
time. No response cache: a student trained again and served under the same name answers anew."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from refed_dspy.clients.lm import build_lm
from refed_dspy.clients.tries import never_connected
from refed_dspy.config import Config
from refed_dspy.config.lm import LMSpec
from refed_dspy.errors import ConfigError, RefedError, RunAborted
from refed_dspy.secrets import first_line

RETRIES = 3  # DSPy's own, on a 429 or 5xx of a busy server


def served_model(config: Config, role: str) -> str:
    """The name the server serves the side `role` ('student', 'baseline') under."""
    ev = config.evaluate
    return ev.student_model if role == "student" else ev.baseline_model


def served_lm(config: Config, role: str) -> Any:
    """The LM that asks the server for the answers of the side `role`: greedy, `max_new_tokens`, no response cache."""
    ev = config.evaluate
    spec = LMSpec(
        model=f"openai/{served_model(config, role)}",
        api_base=ev.server,
        api_key_env=ev.server_key_env,
        temperature=0.0,
        max_tokens=ev.max_new_tokens,
        num_retries=RETRIES,
        extra={"cache": False},
    )
    return build_lm(spec, f"the {role}'s server", max_connections=ev.batch_size)


def served_answers(lm: Any, texts: list[str], server: str) -> list[str]:
    """The answers of the LM `lm` to `texts`, asked at once (one thread each); RunAborted (exit 3) when the server
    cannot be reached, ConfigError (exit 2) when it refuses the request (a model it does not serve, its key)."""
    with ThreadPoolExecutor(max(1, len(texts))) as pool:
        return list(pool.map(lambda text: _asked(lm, text, server), texts))


def _asked(lm: Any, text: str, server: str) -> str:
    try:
        outputs = lm(text)
    except RefedError:
        raise
    except Exception as err:  # noqa: BLE001 - the client's own error types; said in one line
        said = first_line(err)
        if never_connected(err):
            raise RunAborted(f"the students' server {server} cannot be reached: {said}") from None
        raise ConfigError(f"the students' server {server} refused '{lm.model}': {said}") from None
    first = outputs[0] if outputs else ""
    return (first.get("text", "") if isinstance(first, dict) else str(first or "")).strip()
