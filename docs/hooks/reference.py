"""MkDocs hooks: the reference pages that are generated from the code when the site is built, so they cannot drift.

- `<!-- generated: cli -->` on a page becomes every `refed` command, read from the argparse parser the command uses
  (`refed_dspy.cli.build_parser`).
- `<!-- generated: config -->` becomes every config field with its type, default and description, read from the
  pydantic models (`refed_dspy.config.Config`, the registered filters, `[prices]` and an experiment's table).
- `<!-- generated: records -->` becomes the record and summary schemas of a run dir, from their pydantic models.

The API pages are mkdocstrings directives written by hand; `check_api_coverage` fails the build when a public name
(`__all__` of `refed_dspy` and of each of its subpackages) is on none of them.

`refed_dspy.signatures`, `.programs` and `.optimizers` live in top-level folders that setuptools maps into the
package; griffe (mkdocstrings' loader) reads a package from one folder, so `on_config` lays out a tree of symlinks
in build/docs-layout that looks like the installed package, and mkdocs.yml points mkdocstrings at it.

The generators are plain functions (no MkDocs import), so tests call them too.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import re
import types
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = ROOT / "build" / "docs-layout"
MAPPED = {"signatures": "signatures", "programs": "programs", "optimizers": "optimizers"}  # package-dir of pyproject
API_PAGES = "reference/api/"
# the marker, and the line after it that tells a reader of the raw page (a checkout, a repository's web view) where
# the same text is found: both are replaced when the site is built
MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$(?:\n_Filled in when the site is built[^\n]*_$)?", re.M)
DIRECTIVE = re.compile(r"^::: ([\w.]+)\s*$", re.M)


# ---- markdown helpers ---------------------------------------------------------------------------------------------
def cell(text: str) -> str:
    """`text` made safe for a table cell: `<`, `>`, `&`, `*` and `|` escaped outside code spans, newlines joined."""
    parts = re.split(r"(`[^`]*`)", " ".join(str(text).split()))
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(part.replace("|", "\\|"))
        else:
            out.append(
                part.replace("&", "&amp;")
                .replace("<", "&lt;")
                .replace(">", "&gt;")
                .replace("*", "\\*")
                .replace("|", "\\|")
                .replace("_", "\\_")
            )
    return "".join(out)


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# ---- the CLI ------------------------------------------------------------------------------------------------------
def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """(command path, parser) of every command and sub-command, in the order `refed --help` lists them."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append(((*path, name), sub))
                out += _commands(sub, (*path, name))
    return out


def _option_row(action: argparse.Action) -> tuple[str, str]:
    if action.option_strings:
        metavar = action.metavar or (action.dest.upper() if action.nargs != 0 else None)
        if action.nargs == "?":
            metavar = f"[{metavar}]"
        names = ", ".join(f"`{o} {metavar}`" if metavar else f"`{o}`" for o in action.option_strings)
    else:
        names = f"`{action.metavar or action.dest}`"
    text = _expanded(action)
    if action.choices and not isinstance(action, argparse._SubParsersAction):
        text += f" (one of: {', '.join(map(str, action.choices))})"
    default = action.default
    said = "default" in text  # the help names its default itself
    if action.option_strings and default not in (None, False, [], argparse.SUPPRESS, "") and not said:
        text += f" (default: {default})"
    return names, cell(text)


def _expanded(action: argparse.Action) -> str:
    """An action's help as `--help` prints it: argparse formats it with the action's own fields (`%(default)s`, and a
    percent sign written `%%`)."""
    params = {name: getattr(value, "__name__", value) for name, value in vars(action).items()}
    if action.choices is not None:
        params["choices"] = ", ".join(map(str, action.choices))
    return (action.help or "") % {**params, "prog": "refed"}


def _help_of(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> str:
    """The one-line help `refed --help` shows for the command at `path`."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                if choice.dest == path[0]:
                    return _expanded(choice) if len(path) == 1 else _help_of(action.choices[path[0]], path[1:])
    return ""


def _slug(path: tuple[str, ...]) -> str:
    """The anchor MkDocs gives the heading `refed <path>`."""
    return "-".join(("refed", *path))


def _paragraphs(text: str | None) -> list[str]:
    """A description's paragraphs (blank-line separated; the lines within one joined), each made safe for markdown."""
    return [line for para in (text or "").split("\n\n") if para.strip() for line in (cell(para), "")][:-1] or [""]


def cli_markdown() -> str:
    """Every `refed` command: usage, description, arguments and options, from the parser itself."""
    from refed_dspy.cli import build_parser

    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps usage lines at the terminal's width: the page's is fixed
    try:
        parser = build_parser()
        commands = _commands(parser)
        helps = {path: _help_of(parser, path) for path, _ in commands}
        parts = ["```text", parser.format_usage().strip(), "```", "", *_paragraphs(parser.description), ""]
        parts += [
            table(
                ("command", "what it does"),
                [(f"[`refed {' '.join(p)}`](#{_slug(p)})", cell(helps[p])) for p, _ in commands],
            ),
            "",
            "Global options, before the command:",
            "",
            table(
                ("option", "what it does"),
                [
                    _option_row(a)
                    for a in parser._actions
                    if a.dest != "help" and not isinstance(a, argparse._SubParsersAction)
                ],
            ),
            "",
            "```text",
            (parser.epilog or "").strip(),
            "```",
        ]
        for path, sub in commands:
            parts += ["", f"## refed {' '.join(path)}", ""]
            parts += ["```text", sub.format_usage().strip(), "```", ""]
            parts += [*_paragraphs(sub.description or helps[path]), ""]
            rows = [
                _option_row(a)
                for a in sub._actions
                if a.dest != "help" and not isinstance(a, argparse._SubParsersAction)
            ]
            subcommands = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
            for group in subcommands:
                rows += [(f"`{c.dest}`", cell(_expanded(c))) for c in group._choices_actions]
            if rows:
                parts += [table(("argument", "what it does"), rows), ""]
            if sub.epilog:
                parts += ["```text", sub.epilog.strip(), "```", ""]
        return "\n".join(parts).rstrip() + "\n"
    finally:
        if columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns


def cli_commands() -> list[str]:
    """`refed synthesize`, `refed judge run`, ...: every command the parser has."""
    from refed_dspy.cli import build_parser

    return ["refed " + " ".join(path) for path, _ in _commands(build_parser())]


# ---- pydantic models: the config and the records ----------------------------------------------------------------
_SCALARS = {str: "string", int: "integer", float: "float", bool: "boolean", type(None): "unset"}


def type_name(annotation: Any) -> str:
    """A field's type as a TOML or JSON user reads it: `string`, `integer`, `"a" | "b"`, `array of string`, ..."""
    from pydantic import BaseModel

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        names = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (", optional" if type(None) in args else "")
    if origin is list:
        return f"array of {type_name(args[0])}" if args else "array"
    if origin is dict:
        return f"table of {type_name(args[1])}" if args and args[1] is not Any else "table"
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"table ({annotation.__name__})"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def _bounds(field: Any) -> str:
    out = []
    inner = [a for a in typing.get_args(field.annotation) if typing.get_origin(a) is typing.Annotated]
    metadata = [*field.metadata, *(m for a in inner for m in a.__metadata__)]  # `Seconds | None` too
    for meta in [m for item in metadata for m in getattr(item, "metadata", [item])]:  # a Field(le=...) holds its own
        for attr, sign in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"), ("max_length", "at most")):
            value = getattr(meta, attr, None)
            if value is not None:
                out.append(f"{sign} {value}")
    return f" ({', '.join(out)})" if out else ""


def _kind(field: Any) -> str:
    """A field's type as type_name says it; a path field's string is a `path` (a leading ~ is the home directory); a
    name checked against a registry (synthesis.method, optimize.optimizer) is one of the names registered now."""
    from refed_dspy.config.section import Registered, is_path

    for meta in field.metadata:
        if isinstance(getattr(meta, "func", None), Registered):
            return " | ".join(json.dumps(name) for name in meta.func.registry.names())
    name = type_name(field.annotation)
    return name.replace("string", "path (~ expands)", 1) if is_path(field) else name


def value_text(value: Any) -> str:
    """A default as it is written in TOML (None: unset)."""
    from pydantic import BaseModel

    if value is None:
        return "*unset*"
    if isinstance(value, BaseModel):
        return "(table)"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    return f"`{json.dumps(value)}`"


def fields_table(model: type, instance: Any = None, skip: tuple[str, ...] = ()) -> str:
    """One row per field of the pydantic `model`: name, type, default (read from `instance` when given), meaning."""
    from pydantic_core import PydanticUndefined

    rows = []
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        key = field.alias or name
        if instance is not None:
            default = getattr(instance, name)
        elif field.default_factory is not None:
            default = field.default_factory()
        else:
            default = None if field.default is PydanticUndefined else field.default
        required = instance is None and field.is_required()
        rows.append(
            (
                f"`{key}`",
                cell(_kind(field) + _bounds(field)),
                "required" if required else value_text(default),
                cell(field.description or ""),
            )
        )
    if not rows:
        return "No settings."
    return table(("field", "type", "default", "description"), rows)


def _doc(model: type) -> str:
    return cell(" ".join((model.__doc__ or "").split("\n\n")[0].split()))


def _tables_in(annotation: Any) -> list[type]:
    """The pydantic models a list field's entries may be (`list[str | Benchmark]` -> [Benchmark])."""
    from pydantic import BaseModel

    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(annotation) for m in _tables_in(a)]
    if typing.get_origin(annotation) is not list:
        return []
    (item,) = typing.get_args(annotation) or (None,)
    options = typing.get_args(item) if typing.get_origin(item) in (typing.Union, types.UnionType) else (item,)
    return [a for a in options if isinstance(a, type) and issubclass(a, BaseModel)]


def config_markdown() -> str:
    """Every table and field of a run config, with its type, default and description."""
    from pydantic import BaseModel

    from refed_dspy.config import Config
    from refed_dspy.config.lm import ModelPrice
    from refed_dspy.experiments.config import ExperimentSettings
    from refed_dspy.filters import FILTERS

    defaults = Config()
    parts = []
    for name, field in Config.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            parts += ["", f"## [{name}]", ""]
            if field.description:
                parts += [cell(field.description), ""]
            parts += [_doc(annotation), "", fields_table(annotation, getattr(defaults, name)), ""]
            for key, inner in annotation.model_fields.items():  # a field whose entries may be tables of their own
                for model in _tables_in(inner.annotation):
                    parts += [f"### A table of `{name}.{key}`: {model.__name__}", "", _doc(model), ""]
                    parts += [fields_table(model), ""]
        elif name == "filters":
            parts += ["", "## [[filters]]", "", cell(field.description or ""), ""]
            parts += ["Each table's `name` picks a registered filter; its other keys are that filter's settings.", ""]
            for filter_name in FILTERS.names():
                model = FILTERS.get(filter_name)
                parts += [f"### {filter_name}", "", _doc(model), ""]
                parts += [fields_table(model, skip=("name",)), ""]
        elif name == "prices":
            parts += ["", '## [prices."MODEL"]', "", cell(field.description or ""), ""]
            parts += [fields_table(ModelPrice), ""]
        else:  # a new kind of field: the build says so instead of leaving it out
            raise ValueError(f"config_markdown does not know how to show Config.{name}")
    parts += ["", "## [experiment]", "", "Only in an experiment's file (`refed experiment --config FILE`).", ""]
    parts += [_doc(ExperimentSettings), "", fields_table(ExperimentSettings), ""]
    return "\n".join(parts).strip() + "\n"


def config_fields() -> list[str]:
    """`teacher.model`, `synthesis.size`, ...: every field of every table of `Config`."""
    from pydantic import BaseModel

    from refed_dspy.config import Config

    out = []
    for name, field in Config.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            out += [f"{name}.{key}" for key in field.annotation.model_fields]
        else:
            out.append(name)
    return out


def records_markdown() -> str:
    """The schemas of a run dir's records and summaries, from their models."""
    from refed_dspy.quality.figures import JudgeSummary
    from refed_dspy.store.records import (
        Analysis,
        ImplementationStrategy,
        OriginalPair,
        Reference,
        ReferenceFeedback,
        Reflection,
        RejectRecord,
        SampleMeta,
        SampleRecord,
    )
    from refed_dspy.synthesis.summary import RunSummary

    sections = [
        ("samples.jsonl: SampleRecord", SampleRecord),
        ("meta: SampleMeta", SampleMeta),
        ("analysis: Analysis", Analysis),
        ("implementation_strategy: ImplementationStrategy", ImplementationStrategy),
        ("original: OriginalPair (method reflection)", OriginalPair),
        ("reflection: Reflection (method reflection)", Reflection),
        ("rejects.jsonl: RejectRecord", RejectRecord),
        ("feedback.jsonl: ReferenceFeedback", ReferenceFeedback),
        ("A reference: Reference", Reference),
        ("summary.json: RunSummary", RunSummary),
        ("judge_summary.json: JudgeSummary", JudgeSummary),
    ]
    parts = []
    for title, model in sections:
        parts += [f"### {title}", "", _doc(model), "", fields_table(model), ""]
    return "\n".join(parts).strip() + "\n"


GENERATORS = {"cli": cli_markdown, "config": config_markdown, "records": records_markdown}


def expand(markdown: str) -> str:
    """`markdown` with each `<!-- generated: NAME -->` line (and its note to a reader of the raw page) replaced by its
    generated text."""

    def one(match: re.Match) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"unknown generated section {name!r}; known: {', '.join(GENERATORS)}")
        return GENERATORS[name]()

    return MARKER.sub(one, markdown)


# ---- the API pages cover every public name -----------------------------------------------------------------------
def public_names() -> dict[str, list[str]]:
    """Package -> its public names: `refed_dspy.__all__` and the `__all__` of every subpackage that declares one."""
    out: dict[str, list[str]] = {}
    queue = ["refed_dspy"] + [f"refed_dspy.{name}" for name in MAPPED]
    seen = set()
    while queue:
        name = queue.pop(0)
        if name in seen:
            continue
        seen.add(name)
        module = importlib.import_module(name)
        if hasattr(module, "__all__"):
            out[name] = list(module.__all__)
        queue += [f"{name}.{m.name}" for m in pkgutil.iter_modules(getattr(module, "__path__", [])) if m.ispkg]
    return out


def _resolve(identifier: str) -> Any:
    """The object `identifier` names, read as Python reads a dotted name: an attribute of a package wins over a
    submodule of the same name (`refed_dspy.filters.dedup` is the function the package binds, not its module)."""
    parts = identifier.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            obj = importlib.import_module(".".join(parts[: i + 1]))
    return obj


def missing_from_api(pages: dict[str, str]) -> list[str]:
    """The public names (`package.name`) that no `::: identifier` of the API pages renders."""
    documented = []
    for text in pages.values():
        for identifier in DIRECTIVE.findall(text):
            documented.append(_resolve(identifier))
    missing = []
    for package, names in public_names().items():
        module = importlib.import_module(package)
        for name in names:
            obj = getattr(module, name)
            if not any(obj is d for d in documented):
                missing.append(f"{package}.{name}")
    return missing


def api_pages(docs_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(docs_dir)): p.read_text() for p in sorted((docs_dir / API_PAGES).glob("*.md"))}


def lay_out_package(dest: Path = LAYOUT) -> Path:
    """A tree of symlinks at `dest` shaped like the installed package (refed_dspy/ with signatures/, programs/ and
    optimizers/ inside it), for griffe to read statically."""
    pkg = dest / "refed_dspy"
    pkg.mkdir(parents=True, exist_ok=True)
    wanted = {p.name: p for p in (ROOT / "refed_dspy").iterdir() if p.name != "__pycache__"}
    wanted.update({name: ROOT / folder for name, folder in MAPPED.items()})
    for entry in list(pkg.iterdir()):  # a link left from an earlier layout, or pointing elsewhere
        if entry.name not in wanted or not entry.is_symlink() or Path(os.readlink(entry)) != wanted[entry.name]:
            entry.unlink()
    for name, target in wanted.items():
        link = pkg / name
        if not link.is_symlink():
            link.symlink_to(target)
    return dest


# ---- MkDocs events -----------------------------------------------------------------------------------------------
# laid out as MkDocs loads this module, while it reads mkdocs.yml: mkdocstrings keeps only the `paths` that exist when
# it reads its own options, so a layout made at on_config came too late for a first build (a fresh clone: CI)
lay_out_package()


def on_config(config: Any) -> Any:
    lay_out_package()
    return config


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.exceptions import PluginError

    missing = missing_from_api(api_pages(Path(config["docs_dir"])))
    if missing:
        raise PluginError(f"public names on no page of docs/{API_PAGES}: {', '.join(missing)}")
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    from mkdocs.exceptions import PluginError

    try:
        return expand(markdown)
    except ValueError as err:
        raise PluginError(f"{page.file.src_uri}: {err}") from None
