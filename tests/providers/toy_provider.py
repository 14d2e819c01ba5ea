"""A provider added in one module, the way a provider file of refed_dspy/providers/ is written (imported by
test_registry.py, which unregisters it after): a hosted service speaking OpenAI's chat format, with hosts of its own
and a schema dialect of its own."""

from refed_dspy.providers.base import Dialect, Provider
from refed_dspy.providers.openai import CHAT
from refed_dspy.providers.registry import PROVIDERS

DIALECT = Dialect(
    "toy", frozenset({"pattern", "maxLength"}), why="Toy takes no patterns nor string lengths", shown=True, rank=40
)

TOY = PROVIDERS.register(
    Provider(
        name="toy",
        title="Toy AI",
        prefixes=("toy", "toy_chat"),
        rank=50,
        example="toy/<name>",
        hosts=("api.toy.example",),
        wire=CHAT,
        default_base="https://api.toy.example/v1",
        dialect=DIALECT,
    )
)
