"""A run that starts the embedded local model itself: the `[local]` section of a config.

With `[local] serve = true`, a command that runs a role (synthesize: the teacher; judge: the judge) whose model is
`openai/<the local model's name>` at a loopback `api_base` starts llama.cpp's server there when nothing listens on
that port (`serving`), and stops it when the command ends, however it ends (done, an error, Ctrl-C, SIGTERM; a kill -9
ends it with the process: it runs in the command's own process). When something already listens there, it is used and
nothing is started. A hosted model, or a server elsewhere, never starts anything.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

from refed_dspy.clients import local_server
from refed_dspy.config.lm import LMSpec
from refed_dspy.config.local import LocalServing
from refed_dspy.providers.llamacpp import LLAMACPP

log = logging.getLogger(__name__)


def served_roles(local: LocalServing, specs: dict[str, LMSpec]) -> dict[str, list[str]]:
    """The loopback base URLs (http://127.0.0.1:PORT) the local model would serve, with the roles reaching each: the
    roles whose model is openai/<its name> at a loopback api_base; none unless `local.serve`."""
    out: dict[str, list[str]] = {}
    if not local.serve:
        return out
    for role, spec in specs.items():
        port = LLAMACPP.served_port(spec.model, spec.primary_api_base, local.model_name)
        if port is not None:
            out.setdefault(f"http://127.0.0.1:{port}", []).append(role)
    return out


@contextlib.contextmanager
def serving(
    local: LocalServing, specs: dict[str, LMSpec], say: Callable[[str], None] = log.info
) -> Iterator[list[local_server.LocalServer]]:
    """Start the local model where `specs` need it and nothing listens (see the module docstring); yields the servers
    started here (none when every endpoint was served already) and stops them on the way out. ConfigError when one
    cannot start (the [local] extra missing, the port taken)."""
    started: list[local_server.LocalServer] = []
    try:
        for url, roles in served_roles(local, specs).items():
            who = " and ".join(roles)
            if local_server.listening(url):  # nothing to do, and nothing said but in debug logs
                log.debug("local model: %s is served already: used there by the %s, nothing started", url, who)
                continue
            say(f"local model: nothing listens at {url}; starting {local.model_name} there for the {who}")
            server = local_server.start(
                local.gguf,
                port=urlsplit(url).port or 0,
                slots=local.slots,
                ctx_per_slot=local.ctx_per_slot,
                threads=local.threads,
            )
            started.append(server)
            say(
                f"local model: serving {server.name} ({server.model_path.name}, {server.slots} slots) at "
                f"{server.api_base}; it stops when this command ends"
            )
        yield started
    finally:
        for server in started:
            server.stop()
            say(f"local model: stopped the server at {server.api_base}")
