"""Degenerate outputs: text that parses and meets its bounds but carries nothing of its own.

A small model asked for `response` often answers with the format itself: `{response}`, the marker
`[[ ## response ## ]]`, `<response>`, a line of the prompt's template, or a copy of an input (the
instruction handed back). Such a reply parses in every adapter, so the check is made on the parsed
values, the same way for every format: a text output is degenerate when it is

- empty: nothing but whitespace and quotes;
- a placeholder: nothing but field markers of any format we or DSPy write (`{name}`, `[[ ## name ## ]]`,
  `<name>`, `</name>`, `"name":`) for a field of the signature (or `completed`), with punctuation;
- template text: the task description, a field's description, or a whole line of the adapter's fixed
  prompt text (its system message and output requirements), which hold no input values;
- a copy of an input field of at least COPY_WORDS words, verbatim after whitespace is collapsed and surrounding
  quotes dropped;
- junk (`junk_reason`): no letter, digit or symbol of its own (a lone bracket, punctuation), list markers alone
  (`1. 2.`), markup alone (`<label for=`, `<br/>`), a field name of the signature (`feature_name`) or one with no
  value (`relevant_skills: None`), a field's marker under any name (`### Feature description##`), field names with
  markers and numbering alone (`#[feature_name] (1)`), or any of these wrapped in markup. An output that
  is an instruction says so in its type, `Annotated[str, Instructs()]`, and is junk as a single word too (`effect`).
  A short answer keeps its place: "Paris", "4", "4." and "Yes." carry content.

An output that revises an input says so in its type, `Annotated[str, Revises("draft_response")]`: it may
come back equal to that input, since "keep what is already good" can mean keeping all of it. Only top-level text
outputs (`str` fields) are checked; lists, objects, numbers and literals carry their contract in their type. The
signatures DSPy's optimizers ask (its instruction proposer's) are not checked.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import dspy

_SPACE = re.compile(r"\s+")
_QUOTES = "\"'`"
_LEFTOVER = re.compile(r"[\s\"'`:,;.{}\[\]()<>/#|=-]*")  # what may surround markers in an echoed template
_EXTRA_NAMES = ("completed",)  # DSPy's closing marker
_DSPY_OWN = ("dspy.propose", "dspy.teleprompt")  # where DSPy's optimizers define the signatures they ask
# a copy of an input counts when it is at least this many words: a short answer ("Yes.", "Paris", "4") may well equal a
# short input, such as an example pair's response
COPY_WORDS = 8


# tags, a tag cut off at the end, and character entities: what markup alone is made of
_MARKUP = re.compile(r"<[^<>]*>?|&#?\w+;")
_ENUMERATORS = re.compile(r"(?:\s*(?:\d{1,3}[.)]|#\d{1,3}[.,;]?))+\s*")  # "1. 2.", "#1, #2, #3"
_NUMBERING = re.compile(r"\(\d{1,3}\)")  # "(1)" after a template's line; "4." or "#1" may be a value ("Answer: 4.")
_HASH_NUMBER = re.compile(r"#\d{1,3}\b")  # "#2": a number, unless a marker stands beside it (`_MARKER_BESIDE`)
_MARKER_BESIDE = re.compile(r"#(?!\d)|[\[\]{}]")  # a `#` of a marker (not a number's) or a bracket or brace
_TEMPLATE_SIGN = re.compile(r"[#\[\]{}]")  # a template's marker characters ("**Answer:**" and "a > b" are text)
_NAME_QUOTES = "\"'`*:"
_WORDS = re.compile(r"\w+")
# a name of at most three words between marker characters on both sides, a `#` on each side or braces around it: a
# field's marker echoed under whatever name the model made of it (`### Feature description##`, `[## example_example## ]`,
# `{message}`); "C#", "#MeToo.", "**Paris**" and "# Introduction" are not wrapped so
_WRAPPED = re.compile(
    r"(?P<left>[\s#\[\]{}<>*`:|=,;.'\"-]*)(?P<inner>[^\W\d_][\w ]{0,60}?)(?P<right>[\s#\[\]{}<>*`:|=,;.'\"-]*)"
)
# a template's or a marker's group: `{name}`, `{% name %}`, `{#}`, `[#]`, `[2]`, `[field_name]`; nested ones (`{[2]}`,
# `{{{name}}}`) go from the inside out. Square brackets around a plain word (`[Paris]`) are text, not a marker
_BRACED = re.compile(r"\{[^{}\[\]]*\}")
_BRACKETED = re.compile(r"\[[^\[\]{}]*\]")
_MARKER_INSIDE = re.compile(r"[\s%#'\"`:.,]*(?:[^\W\d][\w-]*(?:\s+[^\W\d][\w-]*){0,2})?[\s%#'\"`:.,]*")
_SNAKE = re.compile(r"\b[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)+\b|#\d*")
# a field name with no value after it: `relevant_skills: None`
_NAME_NO_VALUE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+\s*[:=]\s*(?:none|null|n/?a|empty|\"\"|''|\[\]|\{\})?", re.I)
# scripts written without spaces between words: one "word" there may be a whole instruction
_UNSPACED = re.compile(r"[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True)
class Revises:
    """Type metadata of a text output that rewrites the input `field`: equal to it is allowed, not a copy."""

    field: str


@dataclass(frozen=True)
class Instructs:
    """Type metadata of a text output that is an instruction for an assistant: a single word is junk there, as a field
    name or markup alone is in any text (see `junk_reason`)."""


def _has_content(text: str) -> bool:
    """A letter or digit of any script, or a symbol that is not ASCII punctuation (an emoji, "∞")."""
    return any(
        c.isalnum() or unicodedata.category(c) == "So" or (unicodedata.category(c) == "Sm" and not c.isascii())
        for c in text
    )


def junk_reason(text: str, names: Iterable[str] = (), instruction: bool = False) -> str | None:
    """Why `text`, an LM's text output, carries nothing a user could use, in a phrase; None when it may.

    Junk: no letter, digit or symbol of its own (`{`, `...`), list markers alone (`1. 2.`), markup alone (`<label for=`,
    `<br/>`), or one of `names` (the signature's field names: `feature_name`). With `instruction`, a single word too
    (`effect`, `## feature_name##`; a text in a script written without spaces is not judged by its words). A short
    answer is not junk:
    "Paris", "4", "4." or "Yes." carry content.

    Args:
        text: the LM's text output.
        names: the signature's field names, which are junk as a whole output.
        instruction: whether the output is an instruction (declared with `Instructs`), where a single word is junk.

    Returns:
        Why the text is junk, in a phrase quoting it, or None when it may carry content.
    """
    t, names = normalized(text), tuple(names)
    if not _has_content(t):
        return f"has no letter or digit ({_short(t)})"
    if _ENUMERATORS.fullmatch(t) and len(re.findall(r"\d", t)) >= 2 and len(t.split()) >= 2:
        return f"is list markers alone ({_short(t)})"
    bare = normalized(_MARKUP.sub(" ", t))  # what markup wraps: `<pre><code>[## example_response##]</code></pre>`
    if not _has_content(bare):
        return f"is markup alone ({_short(t)})"
    for shown in dict.fromkeys((t, bare)):
        reason = _marker_reason(shown, names)
        if reason is not None:
            return f"{reason} ({_short(t)}), not a value"
    if instruction and (len(t.split()) == 1 or len(_WORDS.findall(t)) == 1) and not _UNSPACED.search(t):
        return f"is a single word ({_short(t)}), not an instruction"
    return None


def _marker_reason(text: str, names: tuple[str, ...]) -> str | None:
    """Why `text` is a field's name or marker instead of a value, in a phrase; None when it is not one."""
    if _as_name(text) in set(names) or _NAME_NO_VALUE.fullmatch(text):
        return "is a field name"
    if _is_wrapped_name(text):
        return "is a field's marker"
    if _names_and_markers_alone(text, names):
        return "is field names and markers alone"
    if _markers_alone(text):
        return "is placeholders or markers alone"
    return None


def _as_name(text: str) -> str:
    """`text` read as a field name: its markers and quotes dropped, its words joined by underscores, in lower case
    (`New Instructions` and `### feature name##` read as new_instructions and feature_name)."""
    bare = text.strip(_NAME_QUOTES + "#[]{}<>,;. ")
    return "_".join(bare.split()).lower() if len(bare.split()) <= 3 else bare


def _names_and_markers_alone(text: str, names: Iterable[str]) -> bool:
    """Whether `text` is field names of `names` (snake_case or in words) with marker characters and numbering, and
    nothing else (`#[feature_name] (1)`, `## feature_description ## [relevant_skills] (2)`, `## new_instructions #2`):
    a template's shape, so it takes a `#`, a bracket or a brace for one ("Feedback, analysis", "response_a > response_b"
    and "**Answer:** 4." are text)."""
    pattern = _names_pattern(tuple(sorted(set(names))))
    if pattern is None or not _TEMPLATE_SIGN.search(text):
        return False
    rest, found = pattern.subn(" ", text)
    rest = _NUMBERING.sub(" ", rest)
    # beside a marker, a `#` numbers a template's line (`## new_instructions #2`); alone, it may be a value (`Answer: #1`)
    if _MARKER_BESIDE.search(rest):
        rest = _HASH_NUMBER.sub(" ", rest)
    return found > 0 and not _has_content(rest)


@functools.lru_cache(maxsize=64)
def _names_pattern(names: tuple[str, ...]) -> re.Pattern[str] | None:
    """Any of `names`, a whole word, its underscores written as underscores or spaces, in any case."""
    if not names:
        return None
    alt = "|".join(re.escape(n).replace("_", "[_ ]") for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"(?<![^\W_])(?:{alt})(?![^\W_])", re.IGNORECASE)


def _markers_alone(text: str) -> bool:
    """Whether `text` is nothing but template or marker groups (`{{output}}},`, `{[2]} {[6]} [11]`,
    `{{{original_strengths}}} {{{improvement_opportunities}}}`), field names and `#` marks, with punctuation."""
    groups = 0
    while True:
        rest = _BRACED.sub(lambda m: " " if _brace_marker(m.group()[1:-1]) else m.group(), text)
        rest = _BRACKETED.sub(lambda m: " " if _bracket_marker(m.group()[1:-1]) else m.group(), rest)
        if rest == text:
            break
        groups, text = groups + 1, rest
    return groups > 0 and not _has_content(_SNAKE.sub(" ", text))


def _brace_marker(inside: str) -> bool:
    """Braces hold a marker when what is inside is a template tag (`{% include x.y %}`) or at most three words."""
    return (inside.startswith("%") and inside.endswith("%")) or _MARKER_INSIDE.fullmatch(inside) is not None


def _bracket_marker(inside: str) -> bool:
    """Square brackets hold a marker when what is inside is nothing, `#`, a number or a snake_case name."""
    bare = inside.strip(" #%'\"`:.,")
    return not bare or bare.isdigit() or ("#" in inside or "_" in bare) and _MARKER_INSIDE.fullmatch(inside) is not None


def _is_wrapped_name(text: str) -> bool:
    """Whether `text` is a name of at most three words between marker characters, a `#` on each side or braces."""
    m = _WRAPPED.fullmatch(text)
    if m is None or len(m["inner"].split()) > 3 or not (m["left"].strip() and m["right"].strip()):
        return False
    return ("#" in m["left"] and "#" in m["right"]) or ("{" in m["left"] and "}" in m["right"])


def instructs(signature: type[dspy.Signature], name: str) -> bool:
    """Whether output `name` of `signature` is an instruction (declared with `Instructs`)."""
    return any(isinstance(m, Instructs) for m in signature.output_fields[name].metadata)


def normalized(text: str) -> str:
    """`text` with runs of whitespace collapsed to one space, trimmed, and surrounding quotes dropped."""
    text = _SPACE.sub(" ", text).strip()
    while len(text) >= 2 and text[0] == text[-1] and text[0] in _QUOTES:
        text = text[1:-1].strip()
    return text


@functools.lru_cache(maxsize=512)
def _marker(names: tuple[str, ...]) -> re.Pattern[str]:
    alt = "|".join(re.escape(n) for n in sorted(set(names), key=len, reverse=True))
    return re.compile(
        rf"\{{+\s*(?:{alt})\s*\}}+"  # {name}, {{name}}
        rf"|\[\[\s*#+\s*(?:{alt})\s*#+\s*\]\]"  # [[ ## name ## ]]
        rf"|\[*\s*#+\s*(?:{alt})\s*#+\s*\]*"  # a marker half echoed: "# name ## ]"
        rf"|<\s*/?\s*(?:{alt})\s*/?\s*>"  # <name>, </name>, <name/>
        rf"|[\"'`](?:{alt})[\"'`]\s*:",  # "name": (a JSON key)
        re.IGNORECASE,
    )


def revised_inputs(signature: type[dspy.Signature], name: str) -> frozenset[str]:
    """The input fields output `name` of `signature` revises (declared with `Revises`), so may equal."""
    field = signature.output_fields[name]
    return frozenset(m.field for m in field.metadata if isinstance(m, Revises))


def template_lines(*texts: str) -> frozenset[str]:
    """Every non-empty line of the adapter's fixed prompt texts, normalized: what an echo of them looks like."""
    return frozenset(line for text in texts for line in (normalized(x) for x in text.splitlines()) if line)


def degenerate_reason(
    signature: type[dspy.Signature],
    name: str,
    value: Any,
    inputs: Mapping[str, Any],
    template: frozenset[str] = frozenset(),
) -> str | None:
    """Why output `name` of `signature` is degenerate, in a phrase naming the field, or None when it is not.

    Args:
        signature: the signature asked; its field names make the markers, its `Revises` marks are honoured.
        name: the output field; only `str` values are judged.
        value: the parsed value of that field.
        inputs: the call's input values by field name.
        template: the adapter's fixed prompt lines for this signature (see `template_lines`).

    Returns:
        The reason, naming the field (empty, a placeholder, junk, the prompt's own text, or a copy of an input), or
            None when the value is not degenerate or not a plain text output.
    """
    if not isinstance(value, str) or signature.output_fields[name].annotation is not str:
        return None  # a Literal or an enum carries its contract in its type: "A" may well equal an input
    text = normalized(value)
    if not text.strip(_QUOTES):
        return f"`{name}` is empty"
    names = (*signature.input_fields, *signature.output_fields, *_EXTRA_NAMES)
    stripped, found = _marker(names).subn(" ", text)
    if found and _LEFTOVER.fullmatch(stripped):
        return f"`{name}` is the output format's placeholder ({_short(text)}), not a value"
    junk = junk_reason(text, names, instructs(signature, name))
    if junk:
        return f"`{name}` {junk}"
    if text in template or text == normalized(signature.instructions) or text in _descriptions(signature):
        return f"`{name}` repeats the prompt's own text ({_short(text)}), not a value"
    allowed = revised_inputs(signature, name)
    for field, given in inputs.items():
        if field in allowed or field not in signature.input_fields or not isinstance(given, str):
            continue
        if normalized(given) == text and len(text.split()) >= COPY_WORDS:
            return f"`{name}` is a copy of the input `{field}`"
    return None


def degenerate_outputs(
    signature: type[dspy.Signature],
    values: Mapping[str, Any],
    inputs: Mapping[str, Any],
    template: frozenset[str] = frozenset(),
) -> str | None:
    """The first reason any text output in `values` is degenerate (see `degenerate_reason`), or None. The asks DSPy's
    optimizers make of their own signatures are theirs to judge (a proposed instruction may repeat the current one).

    Args:
        signature: the signature asked.
        values: the parsed output values by field name.
        inputs: the call's input values by field name.
        template: the adapter's fixed prompt lines for this signature (see `template_lines`).

    Returns:
        The first reason found, naming its field, or None when no text output is degenerate.
    """
    if signature.__module__.startswith(_DSPY_OWN):
        return None
    for name in signature.output_fields:
        reason = degenerate_reason(signature, name, values.get(name), inputs, template)
        if reason:
            return reason
    return None


@functools.lru_cache(maxsize=512)
def _descriptions(signature: type[dspy.Signature]) -> frozenset[str]:
    """Each field's description, normalized."""
    out = set()
    for field in signature.fields.values():
        desc = (field.json_schema_extra or {}).get("desc") if isinstance(field.json_schema_extra, dict) else None
        if isinstance(desc, str) and normalized(desc):
            out.add(normalized(desc))
    return frozenset(out)


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")
