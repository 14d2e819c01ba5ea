"""Provider knowledge lives in refed_dspy/providers/: outside it, no module of the package names Anthropic or Azure in
its code. The rest of refed asks the provider object (`provider_for(model)`), and a message that names a provider
takes the name from it.

What counts as code: identifiers (names, attributes, functions, classes, arguments, keyword names, imports) and string
literals, f-strings included. What does not: docstrings, comments (not in the syntax tree), and the text of a
`description=` or `help=` argument (a config field's description or a CLI option's help: documentation, which the
reference pages are generated from). A provider's name in prose explains; in code it is a branch on the provider, or a
fact about it that belongs in its provider file.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# the installed package: refed_dspy/ and the folders it maps in as subpackages
FOLDERS = ("refed_dspy", "signatures", "programs", "optimizers")
KNOWLEDGE = ROOT / "refed_dspy" / "providers"
NAMES = re.compile(r"anthropic|azure", re.IGNORECASE)
DOC_ARGUMENTS = {"description", "help"}
_DEFINITIONS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _documentation(tree: ast.AST) -> set[int]:
    """The ids of the nodes that are documentation: docstrings, and the values of description= and help=."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, _DEFINITIONS) and node.body and isinstance(node.body[0], ast.Expr):
            first = node.body[0].value
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                out.add(id(first))
        elif isinstance(node, ast.keyword) and node.arg in DOC_ARGUMENTS:
            out.update(id(part) for part in ast.walk(node.value))
    return out


def _words(node: ast.AST) -> list[str]:
    """The names and text a node puts in the code."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.arg):
        return [node.arg]
    if isinstance(node, ast.keyword):
        return [node.arg or ""]
    if isinstance(node, ast.alias):
        return [node.name, node.asname or ""]
    if isinstance(node, ast.ImportFrom):
        return [node.module or ""]
    return []


def named_in_code(source: str) -> list[tuple[int, str]]:
    """(line, word) of each identifier or string literal of `source` that names Anthropic or Azure, documentation
    left out."""
    tree = ast.parse(source)
    skip = _documentation(tree)
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        for word in _words(node):
            if NAMES.search(word):
                found.append((getattr(node, "lineno", 0), word))
    return sorted(found)


def test_no_module_outside_providers_names_anthropic_or_azure():
    wrong = []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.is_relative_to(KNOWLEDGE):
                continue
            for line, word in named_in_code(path.read_text(encoding="utf-8")):
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {word!r}")
    assert not wrong, "ask the provider object (refed_dspy.providers) instead:\n" + "\n".join(wrong)


def test_the_scan_finds_a_provider_named_in_code_and_not_in_its_documentation():
    source = '''
"""Talks to Anthropic's API."""  # a comment naming Azure
from refed_dspy.launch.batch.api import AnthropicBatches as batches

def send(model, azure_version=None, **kw):
    """Sends to Azure."""
    Field(None, description="Azure OpenAI needs an api_version")
    parser.add_argument("--x", help=f"an {'Anthropic'} host")
    if model.startswith("azure/"):
        return f"{model}: anthropic-version"
    return call(anthropic_beta=True)
'''
    assert named_in_code(source) == [
        (3, "AnthropicBatches"),
        (5, "azure_version"),
        (9, "azure/"),
        (10, ": anthropic-version"),
        (11, "anthropic_beta"),
    ]
