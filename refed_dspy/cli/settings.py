"""`refed config show` and `refed seeds`: the resolved config, and the references it reads."""

from __future__ import annotations

import argparse
import json
from typing import Any

from refed_dspy.cli.common import add_config_args, prints_help
from refed_dspy.text.counts import counted


def _cmd_config_show(args: argparse.Namespace) -> int:
    from refed_dspy.config import load_config, to_toml
    from refed_dspy.config.section import mask_secrets
    from refed_dspy.experiments.config import is_experiment_file, resolved_experiment

    if args.config and is_experiment_file(args.config):  # a run config with an [experiment] table: both resolved
        config, table, grid = resolved_experiment(args.config, args.overrides)
    else:
        config, table, grid = load_config(args.config, args.overrides), None, []
    if args.json:
        data = mask_secrets(config.model_dump(mode="json"))
        print(json.dumps(data if table is None else {**data, "experiment": table, "cells": grid}, indent=2))
        return 0
    print(to_toml(config, say_unset=True), end="")
    if table is not None:
        import tomli_w

        print("\n" + tomli_w.dumps({"experiment": table}), end="")
        print(f"# {counted(len(grid), 'cell')}:")
        for cell in grid:
            print(f"#   {cell['id']}: {cell['label']}")
    return 0


def _cmd_seeds(args: argparse.Namespace) -> int:
    from refed_dspy.config import load_config
    from refed_dspy.store.seeds import read_seeds

    config = load_config(args.config, args.overrides)
    refs, report = read_seeds(config.seeds)
    print(report.line())
    for ref in refs[: args.show]:
        print(f"- {ref.id}  {ref.instruction[:90]!r}")
    return 0


def register(sub: Any) -> None:
    """Add this group's commands to the `refed` parser."""
    p = sub.add_parser("config", help="inspect configuration", description="Inspect configuration.")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    p.set_defaults(func=prints_help(p))
    show = csub.add_parser(
        "show",
        help="print the resolved config (secrets masked)",
        description="Print the resolved config: defaults, file and --set overrides, secrets masked. An experiment "
        "file (an [experiment] table): its base merged, and its [experiment] settings with their defaults and the "
        "cells of its grid.",
    )
    add_config_args(show)
    show.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    show.set_defaults(func=_cmd_config_show)

    p = sub.add_parser(
        "seeds",
        help="load the seed references and report what was kept",
        description="Load the references named by seeds.source and print what was kept and skipped.",
    )
    add_config_args(p)
    p.add_argument("--show", type=int, default=5, metavar="N", help="list the first N references (default 5)")
    p.set_defaults(func=_cmd_seeds)
