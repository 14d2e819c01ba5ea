"""The generated reference pages cover the code: every command and option of the parser, every config field with
its default, every public name on an API page (docs/hooks/reference.py makes them when the site is built)."""

from __future__ import annotations

import argparse
import importlib.util

import pytest
from doc_examples import ROOT


@pytest.fixture(scope="module")
def hooks():
    spec = importlib.util.spec_from_file_location("docs_reference_hooks", ROOT / "docs" / "hooks" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parsers(parser, path=()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_the_cli_page_has_every_command_and_option_of_the_parser(hooks):
    from refed_dspy.cli import build_parser

    page = hooks.cli_markdown()
    commands = [path for path, _ in _parsers(build_parser()) if path]
    assert len(commands) >= 18
    assert "%%" not in page
    for path, parser in _parsers(build_parser()):
        assert "%%" not in parser.format_help(), f"refed {' '.join(path)} --help shows a doubled %"
        if path:
            assert f"\n## refed {' '.join(path)}\n" in page
        for action in parser._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    section = page.split(f"## refed {' '.join(path)}\n", 1)[1] if path else page
                    assert f"`{option}" in section.split("\n## ", 1)[0], f"{option} of refed {' '.join(path)}"


def test_a_new_option_shows_on_the_cli_page(hooks, monkeypatch):
    import refed_dspy.cli as cli

    build = cli.build_parser

    def with_one_more():
        parser = build()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices["report"].add_argument("--brand-new", metavar="X", help="a <new> option | with a pipe")
        return parser

    monkeypatch.setattr(cli, "build_parser", with_one_more)
    page = hooks.cli_markdown()
    assert "| `--brand-new X` | a &lt;new&gt; option \\| with a pipe |" in page


def test_the_config_page_has_every_field_with_its_default(hooks):
    from refed_dspy.config import Config

    page = "\n" + hooks.config_markdown()
    defaults = Config()
    fields = hooks.config_fields()
    assert "teacher.model" in fields and "optimize.optimizer" in fields and len(fields) > 80
    for path in fields:
        section, _, key = path.partition(".")
        if not key:  # [[filters]] and [prices."MODEL"] are tables of their own
            assert f"## [[{section}]]" in page or f"## [{section}." in page
            continue
        part = page.split(f"\n## [{section}]\n", 1)[1].split("\n## ", 1)[0]
        row = next((line for line in part.splitlines() if line.startswith(f"| `{key}` |")), None)
        assert row is not None, path
        assert hooks.value_text(getattr(getattr(defaults, section), key)) in row, path
    # the judge's own default: unset, the model's own for a judge (0; 1 for a model that takes no other)
    judge_row = next(x for x in page.split("## [judge]")[1].splitlines() if x.startswith("| `temperature` |"))
    assert (
        judge_row.startswith("| `temperature` | float, optional (≥ 0.0, ≤ 2.0) | *unset* |")
        and "0 for a judge" in judge_row
    )
    for name in ("rouge_diversity", "min_score", "length", "dedup", "random_subset", "judge_prefers_improved"):
        assert f"\n### {name}\n" in page
    assert "\n## [experiment]\n" in page and "| `test_fraction` |" in page
    benchmark = page.split("\n### A table of `quality.benchmarks`: Benchmark\n", 1)[1].split("\n## ", 1)[0]
    assert "| `source` | path (~ expands) | required |" in benchmark and '| `split` | string | `"train"` |' in benchmark


def test_every_public_name_is_on_an_api_page(hooks):
    pages = hooks.api_pages(ROOT / "docs")
    names = hooks.public_names()
    assert {"refed_dspy", "refed_dspy.programs", "refed_dspy.optimizers", "refed_dspy.filters"} <= names.keys()
    assert hooks.missing_from_api(pages) == []
    # the functions the issue names render with their parameters: they are there, each once
    text = pages["reference/api/index.md"]
    for name in ("synthesize", "optimize", "experiment", "judge_run", "export_run"):
        assert len([line for line in text.splitlines() if line.startswith("::: ") and line.endswith(f".{name}")]) == 1
    assert "::: refed_dspy.optimizers.metrics.make_metric" in text


def test_a_public_name_on_no_page_is_named(hooks):
    pages = hooks.api_pages(ROOT / "docs")
    pages["reference/api/index.md"] = pages["reference/api/index.md"].replace(
        "::: refed_dspy.synthesis.api.synthesize\n", ""
    )
    pages["reference/api/programs.md"] = pages["reference/api/programs.md"].replace(
        "::: refed_dspy.programs.RespondAndImprove\n", ""
    )
    assert hooks.missing_from_api(pages) == ["refed_dspy.synthesize", "refed_dspy.programs.RespondAndImprove"]


def test_an_unknown_generated_section_fails(hooks):
    with pytest.raises(ValueError, match="unknown generated section 'clii'"):
        hooks.expand("# x\n\n<!-- generated: clii -->\n")


@pytest.mark.parametrize(
    "name", ["synthesize", "optimize", "experiment", "make_metric", "judge_run", "export_run", "compare", "meta_eval"]
)
def test_the_main_functions_document_every_parameter(name):
    """The API page renders a parameters table from each docstring's Args section: every parameter is in it."""
    import inspect

    import refed_dspy

    func = getattr(refed_dspy, name)
    doc = inspect.getdoc(func) or ""
    assert "\nArgs:\n" in doc, f"{name} has no Args section"
    args = doc.split("\nArgs:\n", 1)[1].split("\n\n", 1)[0]
    documented = {line.split(":", 1)[0].strip() for line in args.splitlines() if not line.startswith("        ")}
    assert set(inspect.signature(func).parameters) == documented, name


def test_a_generated_sections_note_to_a_raw_reader_is_replaced_with_it(hooks):
    """A reader of the raw page (a checkout) is told where the text is; the built page has the text, not the note."""
    raw = "# CLI\n\n<!-- generated: cli -->\n_Filled in when the site is built (`mkdocs build`); see `refed --help`._\n\nafter\n"
    built = hooks.expand(raw)
    assert "Filled in when" not in built and "refed synthesize" in built and built.endswith("\nafter\n")
    for page in ("cli.md", "config.md", "run-dir.md"):
        text = (ROOT / "docs" / "reference" / page).read_text()
        assert "_Filled in when the site is built" in text and "Filled in when" not in hooks.expand(text)


def _rendered_functions(hooks) -> dict[str, object]:
    """Every function, and every public documented method of a class, that an API page renders, by name."""
    import importlib
    import inspect

    found = {}
    for text in hooks.api_pages(ROOT / "docs").values():
        for name in hooks.DIRECTIVE.findall(text):
            module, _, attr = name.rpartition(".")
            obj = getattr(importlib.import_module(module), attr)
            if inspect.isfunction(obj):
                found[name] = obj
            elif inspect.isclass(obj):
                for key, value in vars(obj).items():
                    if not key.startswith("_") and inspect.isfunction(value) and value.__doc__:
                        found[f"{name}.{key}"] = value
    return found


def _sections_missing(func) -> list[str]:
    """The Google-style sections `func`'s docstring lacks: Args for its parameters, Returns (or Yields) for a value."""
    import inspect

    doc, sig = inspect.getdoc(func) or "", inspect.signature(func)
    missing = []
    if [p for p in sig.parameters if p not in ("self", "cls")] and "\nArgs:\n" not in doc:
        missing.append("Args")
    returned = sig.return_annotation not in (inspect.Signature.empty, None, "None")
    if returned and "\nReturns:\n" not in doc and "\nYields:\n" not in doc:
        missing.append("Returns")
    return missing


def test_every_function_an_api_page_renders_has_its_google_sections(hooks):
    """mkdocstrings renders Args, Returns and Raises as tables: a page without them is prose only."""
    found = _rendered_functions(hooks)
    assert len(found) > 100
    lacking = {name: _sections_missing(func) for name, func in found.items()}
    assert {name: m for name, m in lacking.items() if m} == {}


def test_the_sections_check_sees_a_missing_section():
    def documented(a: int) -> int:
        """Add one.

        Args:
            a: a number.

        Returns:
            a + 1.
        """
        return a + 1

    def bare(a: int) -> int:
        """Add one."""
        return a + 1

    assert _sections_missing(documented) == []
    assert _sections_missing(bare) == ["Args", "Returns"]
