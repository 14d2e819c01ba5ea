"""What our adapters add to DSPy's: lean prompts, memoized system messages, contract checks, and repair before reject.

- The prompt states each field and each bound once (wording.py): the instructions, the inputs a description says more
  of, and the reply's format unless the provider shows the model the response schema (`schema_shown`).
- The system message depends only on the signature, so it is built once per signature (DSPy rebuilds
  it on every call: about a quarter of the client's CPU per call in bench/overhead.py).
- Every parsed reply is checked against the signature's output contract (contract.py), in every
  mode, so a score of 63 on a 1-10 scale is a parse failure, not a value.
- A reply that does not parse or breaks its contract is asked again, up to `max_repairs` times: the
  conversation goes on with the bad reply and a user turn naming what was wrong. DSPy's own
  ChatAdapter -> JSONAdapter fallback is off; the repair is the one second chance, in every mode.
  Each call's CallInfo says whether it was a repair and whether its reply failed to parse.
- A reply that parses but whose text says nothing of its own (empty, the format's placeholder, the
  prompt's template, a copy of an input: degenerate.py) breaks its contract too: it is repaired the same
  way, and raised as DegenerateOutputError (reject kind `degenerate`) when the repairs run out.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError
from pydantic import ValidationError

from refed_dspy.adapters.contract import ContractError, check_outputs, describe_validation_error, output_schema
from refed_dspy.adapters.degenerate import degenerate_outputs, template_lines
from refed_dspy.adapters.layout import stable_prompt
from refed_dspy.adapters.wording import input_notes, reminder, reply_format, task_text, told_schema
from refed_dspy.clients.boundary import CallBoundary
from refed_dspy.clients.calls import CallTag
from refed_dspy.clients.lm_routing import route_of

_MAX_ENTRIES = 256
_ECHO_CHARS = 8000  # of a bad reply, shown back to the LM in a repair turn

try:  # DSPy marks adapter-made message calls so that its messages= deprecation warning stays quiet
    from dspy.clients._deprecation import adapter_message_call
except ImportError:  # pragma: no cover - a DSPy without the marker has no warning either
    import contextlib

    def adapter_message_call(lm, messages):  # noqa: ARG001
        return contextlib.nullcontext()


def handed(lm: Any, tag: CallTag, method: str) -> tuple[Any, dict[str, Any]]:
    """The LM whose `method` ("__call__" or "acall") the adapter's call goes to, and what it is handed besides its
    request: refed's call boundary takes the adapter's tag. An LM not behind the boundary whose calls the run counts on
    a twin (refed_dspy.clients.lm_routing: DSPy's own call methods route it there) is called through the twin, which
    takes the tag; another is called as DSPy calls it."""
    if not isinstance(lm, CallBoundary):
        twin = route_of(lm) if getattr(type(lm), method) is getattr(dspy.BaseLM, method) else None
        if twin is None:
            return lm, {}
        lm = twin
    return lm, {"refed_tag": tag}


def describe_parse_error(err: AdapterParseError) -> str:
    """One line saying what was wrong with a reply, from DSPy's parse error or ours.

    Args:
        err: the parse error raised for the reply (its cause, when a field failed validation, is read too).

    Returns:
        The problem in one line: the field and what was wrong with it, the fields missing, or the error's first line.
    """
    text = str(err)
    cause = err.__cause__ or err.__context__
    field = re.match(r"(?:\[[^\]]*\] )?Failed to parse field (\w+)", text)
    if field and isinstance(cause, ValidationError):
        return f"{field.group(1)}: {describe_validation_error(cause)}"
    if field and cause is not None:
        return f"{field.group(1)}: {str(cause).strip().splitlines()[0][:200]}"
    first = text.split("\n\n")[0].strip()
    first = re.sub(r"^\[[^\]]*\] ", "", first)
    if first.startswith("Adapter ") and err.signature is not None:
        got = set(err.parsed_result or ())
        missing = [f"`{name}`" for name in err.signature.output_fields if name not in got]
        if missing:
            return f"the reply has no {', '.join(missing)} field{'s' if len(missing) > 1 else ''}"
        return "the reply is empty or not in the required format"
    if first.startswith("LM response cannot be serialized"):
        return "the reply is not a JSON object"
    return first.splitlines()[0][:300] if first else type(err).__name__


class DegenerateOutputError(AdapterParseError):
    """A reply that parsed and met its bounds, but a text output is degenerate; `lm_response` is the reply."""


def _reply_text(output: Any) -> str:
    """The text of one LM output (a string, or a dict with "text")."""
    text = output.get("text") if isinstance(output, dict) else output
    return text if isinstance(text, str) else str(text)


class RepairingAdapter:
    """Mixin for a DSPy ChatAdapter subclass: see the module docstring."""

    mode = "chat"

    def __init__(self, *args: Any, max_repairs: int = 1, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.max_repairs = max_repairs
        self._system: dict[tuple[Any, str], str] = {}
        self._template: dict[tuple[Any, str], frozenset[str]] = {}

    def __deepcopy__(self, memo: dict) -> RepairingAdapter:
        return self  # stateless but for the memo, which is safe to share

    # ---- the system message, once per signature ----------------------------------------------------
    def format_system_message(self, signature: type[dspy.Signature]) -> str:
        key = (signature, signature.instructions)
        text = self._system.get(key)
        if text is None:
            parts = (
                self.format_task_description(signature),
                self.format_field_description(signature),
                self.format_field_structure(signature),
            )
            text = "\n\n".join(part for part in parts if part)
            if len(self._system) >= _MAX_ENTRIES:
                self._system.clear()
            self._system[key] = text  # a race only computes the same text twice
        return text

    # ---- each field and each bound stated once (wording.py) ------------------------------------------
    schema_shown = False  # the provider shows the model the response schema: the text states no output

    def format_task_description(self, signature: type[dspy.Signature]) -> str:
        return task_text(signature)

    def format_field_description(self, signature: type[dspy.Signature]) -> str:
        return input_notes(signature)

    def format_field_structure(self, signature: type[dspy.Signature]) -> str:
        if self.schema_shown:
            return ""
        return reply_format(signature, told_schema(output_schema(signature)), chat=self.mode == "chat")

    def user_message_output_requirements(self, signature: type[dspy.Signature]) -> str:
        return "" if self.schema_shown else reminder(signature, chat=self.mode == "chat")

    # ---- parsing checks the contract ----------------------------------------------------------------
    def parse(self, signature: type[dspy.Signature], completion: str) -> dict[str, Any]:
        fields = super().parse(signature, completion)
        # an empty text or a bare placeholder is named as such, not as a length bound; copies of inputs are
        # found in _exchange, which has the inputs
        reason = degenerate_outputs(signature, fields, {}, self.template(signature))
        if reason:
            raise DegenerateOutputError(
                adapter_name=type(self).__name__, signature=signature, lm_response=completion, message=reason
            )
        try:
            return check_outputs(signature, fields)
        except ContractError as err:
            raise AdapterParseError(
                adapter_name=type(self).__name__, signature=signature, lm_response=completion, message=str(err)
            ) from err

    # ---- degenerate text breaks the contract too ------------------------------------------------------
    def template(self, signature: type[dspy.Signature]) -> frozenset[str]:
        """The lines of this adapter's fixed prompt text for `signature` (no input values), normalized.

        Args:
            signature: the signature whose system message and output requirements are read (memoized).

        Returns:
            The non-empty lines of that text, normalized (refed_dspy.adapters.degenerate.template_lines).
        """
        key = (signature, signature.instructions)
        lines = self._template.get(key)
        if lines is None:
            lines = template_lines(
                self.format_system_message(signature), self.user_message_output_requirements(signature)
            )
            if len(self._template) >= _MAX_ENTRIES:
                self._template.clear()
            self._template[key] = lines
        return lines

    def check_degenerate(
        self,
        signature: type[dspy.Signature],
        shown: type[dspy.Signature],
        values: list[dict[str, Any]],
        inputs: dict[str, Any],
        outputs: list[Any],
    ) -> None:
        """Raise DegenerateOutputError for the first parsed reply with a degenerate text output.

        Args:
            signature: the signature asked, whose text outputs are checked.
            shown: the signature the prompt was built from, whose template lines an output must not repeat.
            values: the parsed values of each reply.
            inputs: the call's input values by field name.
            outputs: the LM's outputs, one per parsed value (the raw reply goes into the error).

        Raises:
            DegenerateOutputError: a text output is degenerate (refed_dspy.adapters.degenerate.degenerate_outputs).
        """
        for value, output in zip(values, outputs, strict=False):
            reason = degenerate_outputs(signature, value, inputs, self.template(shown))
            if reason:
                raise DegenerateOutputError(
                    adapter_name=type(self).__name__,
                    signature=signature,
                    lm_response=_reply_text(output),
                    message=reason,
                )

    # ---- what each mode adds to the request ---------------------------------------------------------
    def request_options(self, signature: type[dspy.Signature]) -> dict[str, Any]:
        """Extra LM kwargs for this mode (response_format); none for the chat format.

        Args:
            signature: the signature asked (a structured mode builds its response format from its outputs).

        Returns:
            The kwargs to add to the LM call; empty here.
        """
        return {}

    # ---- the exchange: ask, parse, repair -----------------------------------------------------------
    def _exchange(
        self,
        lm: Any,
        lm_kwargs: dict[str, Any],
        signature: type[dspy.Signature],
        demos: list[dict],
        inputs: dict[str, Any],
    ) -> Generator[tuple[list[dict], dict, bool], tuple[Any, CallTag], list[dict]]:
        """Yields (messages, lm kwargs, is_repair) for each call; is sent (outputs, tag) back; returns the values."""
        lm_kwargs = {**lm_kwargs, **self.request_options(signature)}
        processed = self._call_preprocess(lm, lm_kwargs, signature, inputs)
        messages = self.format(processed, demos, inputs)
        for attempt in range(self.max_repairs + 1):
            outputs, tag = yield messages, lm_kwargs, attempt > 0
            try:
                values = self._call_postprocess(processed, signature, outputs, lm, lm_kwargs)
                self.check_degenerate(signature, processed, values, inputs, outputs)
                return values
            except AdapterParseError as err:
                if tag.info is not None:
                    tag.info.parse_error = True
                problem = describe_parse_error(err)
                if attempt >= self.max_repairs:
                    after = f" (after {attempt} repair{'s' if attempt > 1 else ''})" if attempt else ""
                    kind = DegenerateOutputError if isinstance(err, DegenerateOutputError) else AdapterParseError
                    raise kind(
                        adapter_name=type(self).__name__,
                        signature=signature,
                        lm_response=err.lm_response,
                        message=f"{problem}{after}",
                    ) from None
                messages = [*messages, *self.repair_turn(processed, err.lm_response, problem)]
        raise AssertionError("unreachable")

    def repair_turn(self, signature: type[dspy.Signature], reply: Any, problem: str) -> list[dict[str, str]]:
        """The two messages that ask again: the bad reply, and what was wrong with it.

        Args:
            signature: the signature asked, whose output requirements the repair turn repeats.
            reply: the bad reply (cut to _ECHO_CHARS characters when longer).
            problem: what was wrong with it, in one line (`describe_parse_error`).

        Returns:
            An assistant message with the bad reply and a user message asking again.
        """
        text = reply if isinstance(reply, str) else str(reply)
        if len(text) > _ECHO_CHARS:
            text = text[:_ECHO_CHARS] + " [...]"
        ask = (
            f"That reply cannot be used: {problem}. Reply again to the request above, in full. "
            f"{self.user_message_output_requirements(signature)}"
        ).rstrip()
        return [{"role": "assistant", "content": text or "(empty)"}, {"role": "user", "content": ask}]

    def __call__(
        self,
        lm: Any,
        lm_kwargs: dict[str, Any],
        signature: type[dspy.Signature],
        demos: list[dict],
        inputs: dict[str, Any],
    ) -> list[dict[str, Any]]:
        exchange = self._exchange(lm, lm_kwargs, signature, demos, inputs)
        messages, kwargs, repair = next(exchange)
        stable = stable_prompt(signature, messages)  # its repairs repeat the same part
        while True:
            tag = CallTag(repair=repair, stable=stable)
            with adapter_message_call(lm, messages):
                target, handing = handed(lm, tag, "__call__")
                outputs = target(messages=messages, **kwargs, **handing)
            try:
                messages, kwargs, repair = exchange.send((outputs, tag))
            except StopIteration as done:
                return done.value

    async def acall(
        self,
        lm: Any,
        lm_kwargs: dict[str, Any],
        signature: type[dspy.Signature],
        demos: list[dict],
        inputs: dict[str, Any],
    ) -> list[dict[str, Any]]:
        exchange = self._exchange(lm, lm_kwargs, signature, demos, inputs)
        messages, kwargs, repair = next(exchange)
        stable = stable_prompt(signature, messages)
        while True:
            tag = CallTag(repair=repair, stable=stable)
            with adapter_message_call(lm, messages):
                target, handing = handed(lm, tag, "acall")
                outputs = await target.acall(messages=messages, **kwargs, **handing)
            try:
                messages, kwargs, repair = exchange.send((outputs, tag))
            except StopIteration as done:
                return done.value
