"""What the Ray test files share (imported by them: a conftest here would clash with tests/conftest.py): one local Ray
for a file, and the worker processes of that Ray alone."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from refed_dspy.launch.ray.connect import ray_processes_of


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the whole file (it takes seconds to start): runs find it connected and join it."""
    try:
        import ray
    except ImportError:
        if os.environ.get("REFED_REQUIRE_RAY"):
            pytest.fail("the [ray] extra is not installed: pip install -e '.[ray]'")
        pytest.skip("the [ray] extra is not installed")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(
        num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False, logging_level=logging.WARNING
    )
    yield ray
    ray.shutdown()


def ray_dir() -> str:
    import ray

    return str(Path(ray.__file__).resolve().parent)


def our_ray_workers(actor: str = "PartWorker") -> list[int]:
    """The process ids of the `actor` workers of the Ray this test process started (its descendants): never those of
    another Ray on the machine (other people's runs share it)."""
    return [p.pid for p in ray_processes_of(os.getpid(), ray_dir()) if p.command.startswith(f"ray::{actor}")]
