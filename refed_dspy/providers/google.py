"""Google's Gemini API and Vertex AI.

Their structured outputs take numeric and item-count bounds but no string lengths, and put the schema in front of the
model. Whether a model enforces a response schema is LiteLLM's model table's to say (for vertex_ai_beta it is not
asked). No batch API refed can use; Gemini's key goes to its own host only.
"""

from __future__ import annotations

from refed_dspy.providers.base import Dialect, Provider
from refed_dspy.providers.registry import PROVIDERS

DIALECT = Dialect(
    "gemini",
    frozenset(
        {"minLength", "maxLength", "pattern", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "uniqueItems"}
    ),
    why="Gemini takes no string-length bounds",
    shown=True,
    rank=30,
)

GEMINI = PROVIDERS.register(
    Provider(
        name="gemini",
        title="Gemini",
        prefixes=("gemini",),
        rank=4,
        hosts=("generativelanguage.googleapis.com",),
        key_names=("GEMINI_API_KEY", "GOOGLE_API_KEY"),
        dialect=DIALECT,
        schema_table=True,
        thoughts_apart=True,
    )
)
VERTEX = PROVIDERS.register(
    Provider(
        name="vertex_ai",
        title="Vertex AI",
        prefixes=("vertex_ai",),
        rank=5,
        dialect=DIALECT,
        schema_table=True,
        thoughts_apart=True,
    )
)
VERTEX_BETA = PROVIDERS.register(
    Provider(
        name="vertex_ai_beta",
        title="Vertex AI (beta)",
        prefixes=("vertex_ai_beta",),
        rank=5,
        dialect=DIALECT,
        thoughts_apart=True,
    )
)
