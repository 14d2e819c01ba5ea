"""What refed knows of each LM provider, in one place: one module per provider family.

A provider module (openai.py, openai_compatible.py, azure.py, anthropic.py, google.py, ollama.py, llamacpp.py, ...)
makes a `Provider` object for each provider of its family and registers it in `PROVIDERS`; importing this package
imports every one of them. The rest of refed asks the object (`provider_for(model)`, `provider_named(name)`) instead
of naming providers: the model prefixes, key variables and hosts, the `api_base` form and default endpoint, the request
format, the schema dialect and whether schemas are enforced, the batch API and the prompt cache. So adding a provider
is adding one file (docs/guides/extend.md). The other modules here are the pieces: base.py (the objects), registry.py
(the registry and its questions), keys.py (whose key a variable is, where a key may go, and a config section's key
read and checked before any call), litellm_table.py (LiteLLM's providers, key variables and model table, its
deprecation dates among them), prices.py (list prices by service tier), sampling.py (a model's sampling defaults) and
dialects.py (schema dialects by model).
"""

from refed_dspy.providers.base import BatchAPI, Dialect, PrefixCache, Provider, Wire, provider_of
from refed_dspy.providers.registry import PROVIDERS, provider_for, provider_named
from refed_dspy.registry import load_package

PIECES = (
    "base",
    "dialects",
    "keys",
    "litellm_table",
    "prices",
    "registry",
    "sampling",
)  # the modules that register no provider
load_package(__name__, __path__, skip=PIECES)

# the schema dialects' names, once every provider module has registered its own
from refed_dspy.providers.dialects import DIALECTS  # noqa: E402

__all__ = [
    "DIALECTS",
    "PROVIDERS",
    "BatchAPI",
    "Dialect",
    "PrefixCache",
    "Provider",
    "Wire",
    "provider_for",
    "provider_named",
    "provider_of",
]
