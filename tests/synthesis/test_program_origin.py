"""Where a program came from: a cell's program.json inside an experiment dir names that experiment and cell (the
registered champion's version tags are test_experiment.py's)."""

import json

from refed_dspy.export.card import origin_text
from refed_dspy.synthesis.program import program_origin


def test_a_cell_s_program_file_names_its_experiment_and_cell(tmp_path):
    exp = tmp_path / "exp"
    program = exp / "cells" / "miprov2-r0-abc" / "optimize" / "program.json"
    program.parent.mkdir(parents=True)
    program.write_text("{}")
    diff = {"mean": 0.2, "ci_low": 0.05, "ci_high": 0.35}
    cells = [{"id": "miprov2-r0-abc", "test_mean": 0.8123, "difference": diff}, {"id": "bootstrap-r0-def"}]
    (exp / "experiment.json").write_text(json.dumps({"name": "respond", "champion": "miprov2-r0-abc", "cells": cells}))
    origin = program_origin(str(program))
    assert origin["experiment"] == "respond" and origin["cell"] == "miprov2-r0-abc" and origin["champion"] is True
    assert origin_text({**origin, "experiment_dir": None}) == (
        "experiment respond, cell miprov2-r0-abc, its champion: test score 0.8123 (0-1), +0.2000 [+0.0500, +0.3500] "
        "against the uncompiled program"
    )
    # any other file (the compiled program a cell did not keep, which was never tested), or a cell dir with no
    # experiment.json beside it, has no origin
    candidate = program.with_name("program.candidate.json")
    candidate.write_text("{}")
    assert program_origin(str(candidate)) is None
    assert program_origin(str(tmp_path / "program.json")) is None
    (exp / "experiment.json").unlink()
    assert program_origin(str(program)) is None
    assert program_origin(None) is None
