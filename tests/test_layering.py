"""The layering of DESIGN.md, checked on the source: imports run downward only, and none is deferred into a function
(the CLI and the package's facade may defer, for start-up speed)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {
    "refed_dspy": "refed_dspy",
    "refed_dspy.signatures": "signatures",
    "refed_dspy.programs": "programs",
    "refed_dspy.optimizers": "optimizers",
}
# floor by floor, bottom first: a module may import from its own floor's package and from the floors below
FLOORS = [
    {
        "errors",
        "secrets",
        "text",
        "runtime",
        "registry",
        "pages",
    },
    {"providers"},
    {"config"},
    {"clients"},
    {"store"},
    {"ledger"},
    {"adapters"},
    {"engine"},
    {"signatures"},
    {"programs"},
    {"methods"},
    {"scoring"},
    {"filters"},
    {"tracking"},
    {"launch"},
    {"synthesis"},
    {"quality"},
    {"optimizers"},
    {"training"},
    {"experiments", "export"},
    {"view"},
    {"cli"},
]
FLOOR = {name: i for i, names in enumerate(FLOORS) for name in names}
MAY_DEFER = {"<facade>", "cli"}


def modules() -> dict[str, Path]:
    out = {}
    for package, folder in SOURCES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


def part_of(module: str) -> str:
    """The layer a module belongs to: its first name below refed_dspy (the package itself is the facade)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "<facade>"


def internal_imports(path: Path) -> list[tuple[str, bool, int]]:
    """(module, deferred into a function, line) of each refed_dspy import; TYPE_CHECKING blocks are left out."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.extend(
                    (a.name, in_function, child.lineno) for a in child.names if a.name.startswith("refed_dspy")
                )
            elif isinstance(child, ast.ImportFrom) and (child.module or "").startswith("refed_dspy"):
                found.append((child.module, in_function, child.lineno))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def test_every_module_has_a_floor():
    unplaced = sorted({part_of(m) for m in modules()} - set(FLOOR) - {"<facade>"})
    assert not unplaced, f"add these to a floor in DESIGN.md and here: {unplaced}"


def test_imports_run_downward_and_are_not_deferred():
    wrong = []
    for module, path in sorted(modules().items()):
        mine = part_of(module)
        for target, deferred, line in internal_imports(path):
            theirs = part_of(target)
            where = f"{path.relative_to(ROOT)}:{line}: {module} -> {target}"
            if deferred and mine not in MAY_DEFER:
                wrong.append(f"{where} (deferred into a function)")
            elif mine != "<facade>" and theirs != "<facade>" and FLOOR[theirs] > FLOOR[mine]:
                wrong.append(f"{where} (upward: {mine} is below {theirs})")
            elif mine not in MAY_DEFER and theirs == "<facade>":
                wrong.append(f"{where} (the facade re-exports; import from the module)")
    assert not wrong, "\n".join(wrong)


def test_the_guard_catches_a_violation(tmp_path):
    """The check itself can fail: an upward import and a deferred one are both found."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from refed_dspy.synthesis.api import synthesize\n\ndef f():\n    from refed_dspy.errors import ConfigError\n"
    )
    found = internal_imports(bad)
    assert ("refed_dspy.synthesis.api", False, 1) in found and ("refed_dspy.errors", True, 4) in found
    assert FLOOR[part_of("refed_dspy.synthesis.api")] > FLOOR[part_of("refed_dspy.clients.lm")]


# where a run's parts run is the transport's and the launch module's to know (issue 45): no stage, runner or command
# imports Ray's worker pool (refed_dspy.launch.ray), which lives under launch/ with the other transports
def test_only_the_launch_package_knows_the_cluster():
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: {module} -> {target}"
        for module, path in sorted(modules().items())
        if part_of(module) != "launch"
        for target, _, line in internal_imports(path)
        if target.startswith("refed_dspy.launch.ray")
    ]
    assert not wrong, "\n".join(wrong)


# provider batches are the answers a stage's work waits on (issue 53, 65): the engine, the stages and the commands ask
# every run the same things, so outside launch/ no module imports the batch package, its broker or the providers'
# batch clients, or names the broker; `refed status` reads a run dir's batch store (launch.batch.store) only
BATCH_READERS = {"refed_dspy.launch.batch.store"}


def batch_knowledge(module: str, path: Path) -> list[str]:
    """Where `module` (at `path`), outside launch/, imports the batch package or names its broker."""
    if part_of(module) == "launch":
        return []
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    found = [
        f"{where}:{line}: {module} -> {target}"
        for target, _, line in internal_imports(path)
        if target.startswith("refed_dspy.launch.batch") and target not in BATCH_READERS
    ]
    text = path.read_text(encoding="utf-8").lower()
    for n, line in enumerate(text.splitlines(), 1):
        if "broker" in line:
            found.append(f"{where}:{n}: names the batch broker")
    return found


def test_only_the_launch_package_knows_provider_batches():
    wrong = [hit for module, path in sorted(modules().items()) for hit in batch_knowledge(module, path)]
    assert not wrong, "\n".join(wrong)


def test_the_batch_guard_catches_a_stage_that_asks_for_the_broker(tmp_path):
    """The check itself can fail: a stage that imports the batch package, or names the broker, is found."""
    bad = tmp_path / "stage.py"
    bad.write_text("from refed_dspy.launch.batch.answers import BatchAnswers\n# the broker's store\n")
    found = batch_knowledge("refed_dspy.engine.stage", bad)
    assert len(found) == 2 and "BatchAnswers" not in found[1]
    assert batch_knowledge("refed_dspy.launch.plan", bad) == []


# one launch for every LM-bound command (issue 53): synthesize, judge, meta-eval and compare, optimize and experiment
# take their LMs from launch/ (launch.plan: `launch`, `held_lm`, `served`, `held_calls`), so no module
# above launch/ imports what builds an LM, puts one behind the call boundary, serves the local model the config's LMs
# reach or opens the ledger scope an optimization's held LMs are routed through (`refed serve-local` alone starts a
# server by hand: `local_server.start`)
LM_MAKERS = {
    "refed_dspy.clients.lm": {"build_lm", "stage_lm"},
    "refed_dspy.clients.boundary": {"bounded"},
    "refed_dspy.clients.local_server": {"start"},
    "refed_dspy.clients.lm_routing": {"LedgerScope", "ledger_scope"},
}


def lm_making(module: str, path: Path) -> list[str]:
    """Where `module` (at `path`), above launch/, imports one of LM_MAKERS."""
    mine = part_of(module)
    if module == "refed_dspy.cli.maintenance" or (mine != "<facade>" and FLOOR[mine] <= FLOOR["launch"]):
        return []
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module in LM_MAKERS:
            names = {a.name for a in node.names} & LM_MAKERS[node.module]
            found += [f"{where}:{node.lineno}: {module} -> {node.module}.{name}" for name in sorted(names)]
        elif isinstance(node, ast.ImportFrom) and node.module == "refed_dspy.clients":  # a module of them whole
            hits = [a.name for a in node.names if f"refed_dspy.clients.{a.name}" in LM_MAKERS]
            found += [f"{where}:{node.lineno}: {module} -> refed_dspy.clients.{name}" for name in hits]
    return found


def test_only_the_launch_package_makes_lms():
    wrong = [hit for module, path in sorted(modules().items()) for hit in lm_making(module, path)]
    assert not wrong, "\n".join(wrong)


def test_the_lm_guard_catches_a_command_that_builds_its_own(tmp_path):
    """The check itself can fail: a command that builds an LM, or serves a local model, is found."""
    bad = tmp_path / "cell.py"
    bad.write_text(
        "from refed_dspy.clients.lm import build_lm, price_of_lm\nfrom refed_dspy.clients import local_server, destination\n"
    )
    found = lm_making("refed_dspy.experiments.cell", bad)
    assert len(found) == 2 and "build_lm" in found[0] and "local_server" in found[1]
    assert lm_making("refed_dspy.launch.plan", bad) == []


def unnamed_in_docstring(module: str, path: Path, known: dict[str, Path]) -> list[str]:
    """The modules `module`'s docstring names (`refed_dspy.x.y`, or `name.py` of its own folder, a subfolder or a
    package's root, or a path from the repository's root) that do not exist in the project's packages."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    wrong = []
    for dotted in re.findall(r"refed_dspy(?:\.[A-Za-z_]\w*)+", doc):
        parts = dotted.split(".")
        found = next((i for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in known), 0)
        if found < len(parts) - 2:  # a module, then at most a class and its attribute
            wrong.append(dotted)
    roots = [ROOT / folder for folder in SOURCES.values()]
    for name in re.findall(r"(?<![\w./`])([a-z_][a-z0-9_/]*)\.py\b", doc):
        places = [path.parent / f"{name}.py", path.parent / name / "__init__.py", ROOT / f"{name}.py"]
        places += [r / f"{name}.py" for r in roots]
        if not any(p.is_file() for p in places):
            wrong.append(f"{name}.py")
    return [f"{module}: {name}" for name in wrong]


def test_module_docstrings_name_only_modules_that_exist():
    known = modules()
    wrong = [hit for module, path in sorted(known.items()) for hit in unnamed_in_docstring(module, path, known)]
    assert not wrong, "\n".join(wrong)


def test_the_docstring_guard_catches_a_module_merged_away(tmp_path):
    bad = tmp_path / "pkg.py"
    bad.write_text('"""See held_lms.py and refed_dspy.optimizers.held_lms.HeldLM.count; plan.py exists."""\n')
    found = unnamed_in_docstring("refed_dspy.optimizers.x", bad, modules())
    assert found == [
        "refed_dspy.optimizers.x: refed_dspy.optimizers.held_lms.HeldLM.count",
        "refed_dspy.optimizers.x: held_lms.py",
    ]
