"""The code blocks of the README and the docs pages, and how a test runs them against loopback servers.

A page marks each block meant to be run, or not, with an HTML comment on the line before its fence (readers of the
rendered page do not see it):

    <!-- example: run -->                 the next block runs (python as a script, bash with `bash -e`)
    <!-- example: skip: REASON -->        the next block is shown, never run (a hosted key, a GPU, a server, pip)
    <!-- example: checked-by: FILE::TEST --> the next block is run by that test, which checks more than exit 0
    <!-- example: config -->              the next TOML block must validate as a run config (and [experiment])
    <!-- example: setup: COMMAND -->      COMMAND (shell) runs at this point of the page, unseen by readers

Every python and bash block of a page must carry one of the first three. The runnable blocks of one page run in
order in one working directory, so a page can build on its earlier blocks (a tutorial does). That directory holds
copies of the repository's configs/ with each [teacher] and [judge] pointed at the loopback servers (no key), and
the environment points LiteLLM's OpenAI provider at the teacher's server, so a block that builds its own
`dspy.LM("openai/...")` reaches it too. Nothing reaches the network.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^<!-- example: (run|skip|checked-by|config|setup)(?::\s*(.*?))?\s*-->$")
FENCE = re.compile(r"^(`{3,})([\w-]*)\s*$")
RUNNABLE = ("python", "bash", "sh", "shell")
# pages whose blocks reproduce benchmarks or quote test output: they are measurements, not examples
NOT_EXAMPLES = ("docs/benchmarks.md", "docs/reliability.md")


@dataclass
class Block:
    page: str  # relative to the repository
    line: int  # of the fence (1-based)
    lang: str
    code: str
    kind: str | None  # run | skip | checked-by | config | setup | None (unmarked)
    arg: str = ""

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list[str]:
    """The README and every docs page that may hold examples."""
    found = ["README.md"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md"))
    return [p for p in found if p not in NOT_EXAMPLES]


def blocks(page: str, text: str | None = None) -> list[Block]:
    """The fenced blocks and setup commands of `page` (or of `text`, named `page`), in order, each with the marker
    before it."""
    lines = ((ROOT / page).read_text(encoding="utf-8") if text is None else text).splitlines()
    out: list[Block] = []
    marker: tuple[str, str] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        found = MARKER.match(line.strip())
        fence = FENCE.match(line.strip())
        if found:
            kind, arg = found.group(1), found.group(2) or ""
            if kind == "setup":
                out.append(Block(page, i + 1, "bash", arg, "setup"))
            else:
                marker = (kind, arg)
        elif fence:
            end = next(
                (j for j in range(i + 1, len(lines)) if lines[j].strip() == fence.group(1)),
                len(lines),
            )
            kind, arg = marker or (None, "")
            out.append(Block(page, i + 1, fence.group(2), "\n".join(lines[i + 1 : end]) + "\n", kind, arg))
            marker, i = None, end
        elif line.strip():
            marker = None  # a marker belongs to the fence right after it (blank lines aside)
        i += 1
    return out


def patched_configs(dest: Path, teacher_url: str, judge_url: str) -> None:
    """The repository's configs/ copied into `dest`, every [teacher] and [judge] reaching the loopback servers."""
    import tomli_w

    from refed_dspy.config.section import tomllib

    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted((ROOT / "configs").glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        for role, url in (("teacher", teacher_url), ("judge", judge_url)):
            table = data.setdefault(role, {})
            table["api_base"] = url
            table["api_key_env"] = ""
        (dest / path.name).write_text(tomli_w.dumps(data), encoding="utf-8")


def environment(cwd: Path, teacher_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k not in ("HF_TOKEN",)}
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "DSPY_CACHEDIR": str(cwd / ".dspy-cache"),  # DSPy's cache key ignores api_base: one per working dir
            "LITELLM_LOCAL_MODEL_COST_MAP": "true",
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "OPENAI_API_BASE": teacher_url,
            "OPENAI_BASE_URL": teacher_url,
            "OPENAI_API_KEY": "sk-loopback",
            "COLUMNS": "120",
        }
    )
    return env


def workspace(cwd: Path, teacher_url: str, judge_url: str) -> dict[str, str]:
    """Prepare `cwd` for a page's blocks; returns the environment to run them in."""
    patched_configs(cwd / "configs", teacher_url, judge_url)
    return environment(cwd, teacher_url)


def run(block: Block, cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    """Run one block (python as a script file, so a traceback names its lines; shell with `bash -e`)."""
    if block.lang == "python":
        script = cwd / f"example_{block.line}.py"
        script.write_text(block.code, encoding="utf-8")
        cmd = [sys.executable, str(script)]
    else:
        cmd = ["bash", "-e", "-o", "pipefail", "-c", block.code]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def checked_block(test: str) -> Block:
    """The one block whose marker says `checked-by: <test>`."""
    found = [b for page in pages() for b in blocks(page) if b.kind == "checked-by" and b.arg == test]
    assert len(found) == 1, f"{len(found)} blocks are marked checked-by: {test}"
    return found[0]
