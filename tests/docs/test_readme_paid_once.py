"""The README's Python example pays for no request twice: every answer the loopback servers gave is stored once in
a run cache, by the run cache's key (`rollout_id` included), within a run and across the script's runs (the
optimization with its examples' synthesis, the synthesis, the judging; each keeps a run cache of its own, and the
synthesis reads the optimization's: `answers_from`)."""

from __future__ import annotations

import collections
import json
import sys
import textwrap

from doc_examples import checked_block, workspace
from loopback_server import read_log

# runs the example as a script, as tests/docs/test_readme.py does, with each answer stored in a run cache (a paid
# request: one read from an earlier run's cache is not stored through `put`) written down with its key and cache
RECORDER = textwrap.dedent(
    """
    import json, os, runpy, sys

    import dspy

    from refed_dspy.store.cache import RunCache

    put = RunCache.put
    out = open(os.environ["REFED_TEST_CLAIMS"], "a", encoding="utf-8")

    def recorded(self, request, value, ignored_args_for_cache_key=None, enable_memory_cache=True):
        key = self.cache_key(request, ignored_args_for_cache_key)
        out.write(json.dumps({"key": key, "cache": str(self.disk_cache.directory)}) + "\\n")
        out.flush()
        return put(self, request, value, ignored_args_for_cache_key, enable_memory_cache)

    RunCache.put = recorded
    runpy.run_path(sys.argv[1], run_name="__main__")
    """
)


def test_the_readme_python_example_sends_no_request_twice(server_factory, tmp_path):
    import subprocess

    block = checked_block("tests/docs/test_readme.py::test_the_readme_python_example_says_what_the_whole_script_spent")
    teacher, judge = server_factory(), server_factory()
    env = workspace(tmp_path, teacher.api_base, judge.api_base)
    claims_path = tmp_path / "claims.jsonl"
    env["REFED_TEST_CLAIMS"] = str(claims_path)
    (tmp_path / "example.py").write_text(block.code, encoding="utf-8")
    (tmp_path / "recorder.py").write_text(RECORDER, encoding="utf-8")
    cmd = [sys.executable, "recorder.py", "example.py"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    claims = [json.loads(line) for line in claims_path.read_text().splitlines()]
    served = read_log(teacher.cfg.log_path) + read_log(judge.cfg.log_path)
    assert len(claims) == len(served) > 0  # every request on the wire is known by its cache key
    in_a_run = collections.Counter((c["cache"], c["key"]) for c in claims)
    assert [k for k, n in in_a_run.items() if n > 1] == []  # none sent twice within a run
    in_the_script = collections.Counter(c["key"] for c in claims)
    # nor twice in the script: the synthesis reads what the optimization's examples run paid for (answers_from)
    assert [k for k, n in in_the_script.items() if n > 1] == []
