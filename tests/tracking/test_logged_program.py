"""A logged program runs wherever it is loaded (issue 25, item 2): optimized with a user's `dspy.LM` pointed at a
key-less server, logged to MLflow, it predicts through `mlflow.pyfunc.load_model` in a fresh process with no key in
its environment, and `mlflow models serve` answers with it; `refed optimize` that logs one prints no traceback."""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import dspy
import pytest
from cli_helpers import predicted_in_a_fresh_process, sets
from conftest import run_overrides
from loopback_server import read_log

import refed_dspy
from refed_dspy.config import load_config
from refed_dspy.tracking.mlflow_runs import API_BASE_VAR, LoggedLM, logged_lm

INPUTS = {
    "reference_instruction": "Explain photosynthesis.",
    "reference_response": "Plants turn light into sugar.",
    "instruction": "Explain tides to a child.",
    "feedback": "Be concrete.",
}
KEY_VARS = ("OPENAI_API_KEY", "REFED_TEST_KEY", API_BASE_VAR)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any key or endpoint override, with a DSPy cache of its own (DSPy's cache
    key ignores api_base: a shared one would answer for another endpoint), plus `extra`."""
    cache = tempfile.mkdtemp(prefix="dspy-cache-")
    return {**{k: v for k, v in os.environ.items() if k not in KEY_VARS}, "DSPY_CACHEDIR": cache, **extra}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def optimize_overrides(srv, tmp_path) -> list[str]:
    """A small bootstrap optimization on the loopback server, tracked in a sqlite store under tmp_path."""
    return run_overrides(srv, tmp_path / "run", 6) + [
        f"judge.api_base='{srv.api_base}'",
        "judge.api_key_env=''",
        "optimize.optimizer='bootstrap'",
        "optimize.n_train=3",
        "optimize.n_val=2",
        "tracking.enabled=true",
        f"tracking.mlflow_uri='sqlite:///{tmp_path / 'mlflow.db'}'",
    ]


def test_a_program_optimized_with_a_user_lm_predicts_where_it_is_loaded(server_factory, tmp_path, monkeypatch):
    import mlflow.dspy.save
    import mlflow.pyfunc

    def inferred(*args, **kwargs):  # MLflow infers them by loading the model and predicting: a teacher call
        raise AssertionError("MLflow inferred the logged program's requirements")

    monkeypatch.setattr(mlflow.dspy.save, "infer_pip_requirements", inferred)
    srv = server_factory()
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    over = optimize_overrides(srv, tmp_path) + [
        "optimize.num_threads=1",
        f"optimize.out='{tmp_path / 'opt'}'",
        # the config names another endpoint and a key variable: what runs, and is logged, is the user's LM
        "teacher.api_base='http://127.0.0.1:9/v1'",
        "teacher.api_key_env='NOT_SET_ANYWHERE'",
    ]
    mine = dspy.LM("openai/gpt-4o-mini", api_base=srv.api_base, api_key="unused", temperature=0.9, max_tokens=3000)
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the sqlite store keeps artifacts under ./mlruns
    try:
        result = refed_dspy.optimize(load_config(None, over), teacher=mine)
    finally:
        os.chdir(cwd)
    assert result.model_uri
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking)
    os.chdir(tmp_path)
    try:  # the requirements were given, not inferred
        requirements = Path(mlflow.pyfunc.get_model_dependencies(result.model_uri)).read_text()
    finally:
        os.chdir(cwd)
        mlflow.set_tracking_uri(previous)
    assert "dspy==" in requirements and "mlflow==" in requirements, requirements
    before = len(read_log(srv.cfg.log_path))
    pred = predicted_in_a_fresh_process(result.model_uri, tracking, INPUTS, clean_env())
    assert pred["improved_response"] and len(read_log(srv.cfg.log_path)) > before  # it called the user's server
    # REFED_API_BASE points it at another endpoint where it is loaded
    other = server_factory()
    predicted_in_a_fresh_process(result.model_uri, tracking, INPUTS, clean_env(**{API_BASE_VAR: other.api_base}))
    assert len(read_log(other.cfg.log_path)) >= 1
    # a real MLflow scoring server, started and stopped here
    port = _free_port()
    env = clean_env(MLFLOW_TRACKING_URI=tracking)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", result.model_uri, "--env-manager", "local"]
        + ["-p", str(port), "-h", "127.0.0.1"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.time() < deadline, "mlflow models serve did not start in 180 s"
            time.sleep(1)
        before = len(read_log(srv.cfg.log_path))
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"dataframe_records": [INPUTS]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=120) as resp:
            answer = json.loads(resp.read())
        assert "improved_response" in json.dumps(answer) and len(read_log(srv.cfg.log_path)) > before
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_the_logged_lm_carries_no_key_and_reads_its_own_variable(monkeypatch):
    from refed_dspy.config.lm import LMSpec

    monkeypatch.setenv("REFED_TEST_KEY", "sk-secret-from-the-environment-123")
    lm = logged_lm(LMSpec(model="openai/gpt-4o-mini", api_base="http://h/v1", api_key_env="REFED_TEST_KEY"))
    lm.bind_environment()
    assert lm.kwargs["api_key"] == "sk-secret-from-the-environment-123"
    blob = pickle.dumps(lm)
    assert b"sk-secret" not in blob and "sk-secret" not in json.dumps(lm.dump_state(), default=str)
    monkeypatch.setenv("REFED_TEST_KEY", "sk-another-key-where-it-is-loaded")
    loaded = pickle.loads(blob)
    assert isinstance(loaded, LoggedLM) and loaded.kwargs["api_key"] == "sk-another-key-where-it-is-loaded"
    assert loaded.kwargs["api_base"] == "http://h/v1"
    keyless = pickle.loads(pickle.dumps(logged_lm(LMSpec(model="openai/m", api_base="http://h/v1", api_key_env=""))))
    assert keyless.kwargs["api_key"] == "unused"


def test_a_user_lm_asking_a_tier_refed_would_refuse_is_logged_as_it_asks():
    """The teacher of record of a user's own LM keeps the tier that LM asks for, whether or not refed's price map
    lists it: refed builds no LM of that section, so logging the program it compiled refuses nothing (building one
    from the same section does)."""
    from refed_dspy.clients.lm import build_lm
    from refed_dspy.errors import ConfigError
    from refed_dspy.synthesis.program import with_lm_of

    record = with_lm_of(load_config(None), "teacher", dspy.LM("openai/gpt-4o", service_tier="flex"))
    assert logged_lm(record.teacher).kwargs["service_tier"] == "flex"
    with pytest.raises(ConfigError, match="offers no flex tier"):
        build_lm(record.teacher)


def test_refed_optimize_that_logs_a_program_prints_no_traceback(server_factory, tmp_path):
    srv = server_factory()
    over = optimize_overrides(srv, tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "refed_dspy.cli", "optimize", *sets(over)],
        cwd=tmp_path,
        env=clean_env(LITELLM_LOCAL_MODEL_COST_MAP="true"),
        capture_output=True,
        text=True,
        timeout=900,
    )
    code, out, err = done.returncode, done.stdout, done.stderr
    assert code == 0, err
    both = out + err
    assert "Traceback" not in both, both[-3000:]
    assert not [line for line in both.splitlines() if "warning" in line.lower()], both[-3000:]


@pytest.mark.parametrize(
    "key,env,expected",
    [("unused", {}, ""), ("EMPTY", {}, ""), (None, {}, None), ("sk-abc-0123456789abcdef", {}, None)]
    + [("sk-abc-0123456789abcdef", {"MY_PROVIDER_KEY": "sk-abc-0123456789abcdef"}, "MY_PROVIDER_KEY")],
)
def test_where_a_user_lm_key_comes_from(monkeypatch, key, env, expected):
    from refed_dspy.clients.destination import key_env_of

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    lm = dspy.LM("openai/m", api_base="http://h/v1", **({"api_key": key} if key else {}))
    assert key_env_of(lm) == expected


def test_a_pinned_lm_is_logged_without_its_key():
    import cloudpickle

    from refed_dspy.programs import RespondAndImprove
    from refed_dspy.tracking.mlflow_runs import without_keys

    program = RespondAndImprove(improve=False)
    program.generate.lm = dspy.LM("openai/gpt-4o-mini", api_base="http://h/v1", api_key="sk-pinned-secret-0123456789")
    clean = without_keys(program)
    assert b"sk-pinned-secret" not in cloudpickle.dumps(clean)
    assert isinstance(clean.generate.lm, LoggedLM) and clean.generate.lm.kwargs["api_base"] == "http://h/v1"
    assert program.generate.lm.kwargs["api_key"] == "sk-pinned-secret-0123456789"  # the user's program is untouched


class _Helped(dspy.Module):
    def __init__(self, helper, kept):
        super().__init__()
        self.respond = dspy.Predict("question -> answer")
        self.helper, self.kept = helper, kept


class _Holder:
    def __init__(self, lm):
        self.lm = lm


class _NoDeepCopy:
    def __deepcopy__(self, memo):
        raise TypeError("not deep-copyable")


def test_an_lm_a_module_keeps_is_logged_without_its_key(monkeypatch):
    """MLflow pickles the whole program: an LM kept as a module's attribute (in a list or dict too, a sub-module's as
    well) pickled its key into the logged model (program.pkl held it in the clear); an object that is no LM and holds a
    key is refused in one line, nothing logged."""
    import cloudpickle

    from refed_dspy.errors import ConfigError
    from refed_dspy.tracking.mlflow_runs import without_keys

    key = "sk-proj-attribute-secret-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    lm = dspy.LM("openai/gpt-4o-mini", api_base="http://h/v1", api_key=key)
    inner = _Helped(lm, {"judges": [lm], "n": 3})
    program = _Helped(lm, [inner, ("x", lm)])
    clean = without_keys(program)
    assert key.encode() not in cloudpickle.dumps(clean)
    assert isinstance(clean.helper, LoggedLM) and clean.helper.key_env == "OPENAI_API_KEY"
    assert isinstance(clean.kept[0].kept["judges"][0], LoggedLM) and isinstance(clean.kept[1][1], LoggedLM)
    assert clean.kept[0].kept["n"] == 3 and clean.kept[1][0] == "x"
    assert program.helper is lm and inner.kept["judges"][0] is lm and lm.kwargs["api_key"] == key  # theirs untouched

    class Client:  # a client of the user's own, with the key inside
        def __init__(self):
            self.token = key

    # wherever it is kept (a set, a plain object beside something DSPy cannot deep-copy), with a key held nowhere:
    # replaced in the copy, and the user's objects left as they were (a shallow copy shared a sub-module, which was
    # changed in place)
    inline = dspy.LM("openai/gpt-4o-mini", api_base="http://h/v1", api_key="sk-inline-never-held-0123456789")

    user_inner = _Helped(inline, {inline})
    odd = _Helped(_Holder(inline), [user_inner, _NoDeepCopy()])
    clean = without_keys(odd)
    assert b"sk-inline-never-held" not in cloudpickle.dumps(clean)
    assert isinstance(clean.helper.lm, LoggedLM) and user_inner.helper is inline and odd.helper.lm is inline

    with pytest.raises(ConfigError, match=r"keeps \$OPENAI_API_KEY in an object that is no LM") as refused:
        without_keys(_Helped(Client(), None))
    assert key not in str(refused.value)
    assert without_keys(_Helped(None, [1, 2])).kept == [1, 2]  # a program with no LM and no key: as it is
