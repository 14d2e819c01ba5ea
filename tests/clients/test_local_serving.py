"""`[local] serve = true`: a run starts the local model where its role needs it and nothing listens, uses a server
that is there, starts nothing for a hosted model, and stops what it started however the run ends. llama.cpp is stood
in for by the loopback server here (the real-model tier runs the real one: tests/test_real_model.py)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from conftest import run_overrides
from loopback_server import LoopbackServer, ServerConfig

from refed_dspy.clients import local_server
from refed_dspy.clients.local_server import served_roles
from refed_dspy.config import load_config
from refed_dspy.config.lm import LMSpec
from refed_dspy.config.run import LocalServing
from refed_dspy.errors import ConfigError, RunDirError, SeedError
from refed_dspy.launch import plan as launch_plan
from refed_dspy.quality.judge import judge_run
from refed_dspy.synthesis import api as synthesis_api
from refed_dspy.synthesis.api import synthesize

LOCAL = Path(__file__).resolve().parents[2] / "configs" / "local.toml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_which_roles_the_local_model_serves():
    on = LocalServing(serve=True)
    smol = {"model": "openai/smollm2", "api_key_env": ""}
    specs = {
        "teacher": LMSpec(**smol, api_base="http://localhost:8080/v1"),
        "judge": LMSpec(**smol, api_base="http://127.0.0.1:8080/v1"),
    }
    assert served_roles(on, specs) == {"http://127.0.0.1:8080": ["teacher", "judge"]}
    assert served_roles(LocalServing(), specs) == {}  # serve is off by default
    never = {
        "hosted": LMSpec(model="openai/gpt-4o-mini"),
        "elsewhere": LMSpec(**smol, api_base="http://gpu1:8080/v1"),
        "another model": LMSpec(model="openai/llama-3.1-8b", api_base="http://127.0.0.1:8080/v1", api_key_env=""),
        "no port": LMSpec(**smol, api_base="http://127.0.0.1/v1"),
    }
    assert served_roles(on, never) == {}
    gguf = LocalServing(serve=True, gguf="/models/qwen2.5-0.5b.gguf")
    assert served_roles(gguf, {"t": LMSpec(model="openai/qwen2.5-0.5b", api_base="http://127.0.0.1:9/v1")})


class _Stand:
    """What local_server.start did: the loopback server it started in llama.cpp's place, and whether it stopped."""

    def __init__(self):
        self.started: list[int] = []
        self.stopped: list[int] = []

    def start(self, model=None, port=8080, slots=2, ctx_per_slot=8192, threads=None, **_) -> local_server.LocalServer:
        srv = LoopbackServer(ServerConfig(), port=port).__enter__()
        self.started.append(port)
        stand = self

        class Stood(local_server.LocalServer):
            def stop(self, timeout: float = 10.0) -> None:
                srv.__exit__(None, None, None)
                stand.stopped.append(port)

        return Stood(srv, f"http://127.0.0.1:{port}", Path(local_server.GGUF), slots, ctx_per_slot)


@pytest.fixture
def stand(monkeypatch) -> _Stand:
    s = _Stand()
    monkeypatch.setattr(launch_plan, "start", s.start)  # what the launch starts the local model with
    return s


def local_config(tmp_path: Path, port: int, size: int = 4, **extra) -> list[str]:
    url = f"http://127.0.0.1:{port}/v1"
    over = run_overrides(_At(url), tmp_path / "run", size, **{"seeds.limit": 2, **extra})
    return [*over, f"judge.api_base='{url}'"]


class _At:
    def __init__(self, api_base: str):
        self.api_base = api_base


def test_nothing_listening_starts_the_model_and_stops_it_when_the_run_ends(stand, tmp_path, caplog):
    port = free_port()
    caplog.set_level("INFO")
    s = synthesize(load_config(LOCAL, local_config(tmp_path, port)))
    assert s["status"] == "complete" and s["samples"] == 4
    assert stand.started == [port] and stand.stopped == [port]
    assert f"nothing listens at http://127.0.0.1:{port}; starting smollm2 there for the teacher" in caplog.text
    assert not local_server.listening(f"http://127.0.0.1:{port}")
    # judging the run (its config.toml says [local] serve = true) starts it for the judge, and stops it again
    assert judge_run(tmp_path / "run")["judged"] == 4
    assert stand.started == [port, port] and stand.stopped == [port, port]


def test_a_run_that_fails_still_stops_the_model(stand, tmp_path, monkeypatch):
    port = free_port()
    with pytest.raises(SeedError):  # a seed file that is not there: said before the model starts
        synthesize(load_config(LOCAL, local_config(tmp_path, port, **{"seeds.source": f"'{tmp_path / 'none.jsonl'}'"})))
    assert stand.started == [] and not (tmp_path / "run").exists()

    async def failing(plan):
        raise RuntimeError("the run failed")

    monkeypatch.setattr(synthesis_api, "run_plan", failing)
    with pytest.raises(RuntimeError, match="the run failed"):
        synthesize(load_config(LOCAL, local_config(tmp_path, port)))
    assert stand.started == [port] and stand.stopped == [port]


def test_a_config_the_launch_refuses_starts_no_model(stand, tmp_path):
    """The local model is started once the launch has checked what it runs with: a cost budget on a model without a
    price is refused before any server starts (and the run dir is left untouched)."""
    port = free_port()
    config = load_config(LOCAL, local_config(tmp_path, port, **{"synthesis.max_cost_usd": 1.0}))
    unpriced = config.teacher.model_copy(update={"input_usd_per_mtok": None, "output_usd_per_mtok": None})
    with pytest.raises(ConfigError, match="needs a price"):
        synthesize(config.model_copy(update={"teacher": unpriced}))
    assert stand.started == [] and stand.stopped == []
    assert not (tmp_path / "run").exists()


def test_a_finished_run_or_a_run_dir_of_another_config_starts_no_model(stand, tmp_path):
    """The run dir is read before the model starts: a run with every sample made starts nothing; one made by another
    config is refused at once, before the model starts, its speed is measured and a time is promised; one with samples
    left starts it (test_local_eta.py: the time it says is of those)."""
    port = free_port()
    config = load_config(LOCAL, local_config(tmp_path, port))
    assert synthesize(config)["samples"] == 4 and stand.started == [port]
    assert synthesize(config)["status"] == "complete" and stand.started == [port]  # nothing left: nothing started
    other = load_config(LOCAL, [*local_config(tmp_path, port, size=6), "synthesis.method='no_feedback'"])
    with pytest.raises(RunDirError, match="was made by a different config"):
        synthesize(other)
    assert stand.started == [port] and stand.stopped == [port]
    more = load_config(LOCAL, local_config(tmp_path, port, size=6))
    assert synthesize(more)["samples"] == 6 and stand.started == [port, port]
    # the judging alike: judged once, then nothing started to judge it again, nor to be refused another judge config
    assert judge_run(tmp_path / "run")["judged"] == 6 and len(stand.started) == 3
    assert judge_run(tmp_path / "run")["judged"] == 6 and len(stand.started) == 3
    assert synthesize(load_config(LOCAL, local_config(tmp_path, port, size=8)))["samples"] == 8
    other_judge = load_config(LOCAL, [*local_config(tmp_path, port, size=8), "judge.temperature=0.5"])
    with pytest.raises(RunDirError, match="was judged with a different judge config"):  # with two samples to judge
        judge_run(tmp_path / "run", other_judge)
    assert len(stand.started) == 4 and stand.stopped == stand.started


def test_a_served_endpoint_is_used_and_nothing_started(stand, server_factory, tmp_path, caplog):
    srv = server_factory()
    caplog.set_level("DEBUG", logger="refed_dspy.launch.plan")
    over = [*run_overrides(srv, tmp_path / "run", 4, **{"seeds.limit": 2}), "teacher.model='openai/smollm2'"]
    assert synthesize(load_config(LOCAL, over))["samples"] == 4
    assert stand.started == [] and "is served already: used there by the teacher, nothing started" in caplog.text


def test_another_model_starts_nothing(stand, server_factory, tmp_path):
    """local.toml with another model swapped in: [local] serve stays on, and nothing is started for it."""
    srv = server_factory()
    over = [*run_overrides(srv, tmp_path / "run", 4, **{"seeds.limit": 2}), "teacher.model='openai/gpt-4o-mini'"]
    assert synthesize(load_config(LOCAL, over))["samples"] == 4
    assert stand.started == []


def test_optimize_starts_the_model_it_needs_and_stops_it(stand, tmp_path):
    from refed_dspy.optimizers.run import optimize

    port = free_port()
    over = local_config(tmp_path, port, size=10, **{"seeds.limit": 4, "judging.criteria": "['helpfulness']"})
    over += ["optimize.n_train=4", "optimize.n_val=2", f"optimize.out='{tmp_path / 'opt'}'"]
    result = optimize(load_config(LOCAL, over))
    assert result.optimizer == "bootstrap" and result.program_path.exists()
    assert stand.started == [port] and stand.stopped == [port]  # teacher and judge share the one server
