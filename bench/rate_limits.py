"""Speed under rate limits: the window controller (refed_dspy.engine.window) against a provider's limit and noise.

    python bench/rate_limits.py [--size 300] [--rpm-size 600]

Against the loopback server (100 ms a call, its own process): a clean run at 40 in flight; the same with 20% of
requests answered 429 at random (Retry-After 1 s); a server that admits 10 requests in flight and answers 429 above,
run at 40, against a clean run at 10; two endpoints of one model, the first with that cap and the other
with none, run at 40, against two with none; a server that admits 1,200 requests a minute (a minute of them at once, as
OpenAI's bucket) and states it in its replies' headers, run at 40, its rate after the first minute against the limit;
the same limit unstated (no headers, a second of it at once), as a gateway without rate-limit headers sends it.
Prints samples/s and their ratios, the 429s' share of the requests (in all, and after the first minute), the window's
figures, and checks every sample is written once and the ledger's paid calls equal the server's answered requests.
Writes bench/results/rate_limits.json. Run by hand, never in CI; figures are ratios and this machine's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
from pathlib import Path

from harness import Server, ok_calls, save, synth_overrides, synthesize_cli, table


def one(name: str, size: int, concurrency: int, also: dict | None = None, **server: object) -> dict:
    """A run of `size` samples at `concurrency` against a server of `server`'s settings (and, with `also`, a second
    endpoint of the same model with those settings: `teacher.api_base` lists both)."""
    work = Path(tempfile.mkdtemp(prefix=f"refed-rl-{name}-"))
    with contextlib.ExitStack() as servers:
        srv = servers.enter_context(Server(log_path=work / "server.jsonl", latency_s=0.1, **server))
        both = [srv]
        if also is not None:
            both.append(servers.enter_context(Server(log_path=work / "also.jsonl", latency_s=0.1, **also)))
        urls = ", ".join(f"'{s.api_base}'" for s in both)
        extra = [f"teacher.api_base=[{urls}]"] if also is not None else []
        summary = synthesize_cli(synth_overrides(srv.api_base, work / "run", size, concurrency, extra=extra))
        log = sorted((e for s in both for e in s.log()), key=lambda e: e["t"])
    ids = [json.loads(line)["meta"]["id"] for line in (work / "run" / "samples.jsonl").read_text().splitlines() if line]
    refused = sum(1 for e in log if e.get("status") == 429)
    window = summary["concurrency"]
    times = sorted(e["t"] for e in log if e.get("status") != 429)  # the requests it admitted
    late = [t for t in times if t >= times[0] + 60.0]
    per_minute = round(len(late) / (times[-1] - late[0]) * 60) if len(late) > 1 else None
    first = min(e["t"] for e in log)
    after = [e for e in log if e["t"] >= first + 60.0]  # every request after the first minute
    refused_after = sum(1 for e in after if e.get("status") == 429)
    return {
        "run": name,
        "concurrency": concurrency,
        "samples": summary["samples"],
        "wall_s": summary["wall_s"],
        "samples_per_s": round(summary["samples"] / summary["wall_s"], 2),
        "requests": len(log),
        "share_429": round(refused / max(1, len(log)), 3),
        "window_min": window.get("min_limit"),
        "window_end": window.get("final_limit"),
        "cuts": window.get("cuts"),
        "per_minute_after_1st": per_minute,
        "share_429_after_1st": round(refused_after / len(after), 3) if after else None,
        "each_sample_once": len(ids) == len(set(ids)) == summary["samples"],
        "ledger_equals_server": summary["usage"]["calls"] == len(ok_calls(log)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=300)
    ap.add_argument("--rpm-size", type=int, default=600, help="samples of the requests-per-minute run")
    args = ap.parse_args()
    rows = [
        one("clean-40", args.size, 40),
        one("random-429-20pct", args.size, 40, rate_429=0.2, retry_after_s=1),
        one("clean-10", args.size, 10),
        one("cap-10", args.size, 40, max_concurrency=10, retry_after_s=1),
        one("two-endpoints-clean-40", args.size, 40, also={}),
        one("two-endpoints-one-cap-10", args.size, 40, also={}, max_concurrency=10, retry_after_s=1),
        one("rpm-1200", args.rpm_size, 40, requests_per_minute=1200, retry_after_s=1),
        one(
            "rpm-1200-unstated",
            args.rpm_size,
            40,
            requests_per_minute=1200,
            rpm_burst_s=1.0,
            rate_limit_headers=False,
            retry_after_s=1,
        ),
    ]
    speed = {r["run"]: r["samples_per_s"] for r in rows}
    ratios = {
        "random_429_over_clean_40": round(speed["random-429-20pct"] / speed["clean-40"], 3),
        "cap_10_over_clean_10": round(speed["cap-10"] / speed["clean-10"], 3),
        "one_of_two_endpoints_cap_10_over_two_clean": round(
            speed["two-endpoints-one-cap-10"] / speed["two-endpoints-clean-40"], 3
        ),
        "rpm_after_1st_minute_over_limit": round((rows[-2]["per_minute_after_1st"] or 0) / 1200, 3),
        "unstated_rpm_after_1st_minute_over_limit": round((rows[-1]["per_minute_after_1st"] or 0) / 1200, 3),
    }
    print(table(rows, list(rows[0])))
    print(ratios)
    print(f"wrote {save('rate_limits', {'rows': rows, 'ratios': ratios})}")


if __name__ == "__main__":
    main()
