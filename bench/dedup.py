"""Dedup: cost per checked instruction as the pool of kept instructions grows.

    python bench/dedup.py [--pool 50000] [--words 14] [--vocab 20000] [--threshold 0.7]

Instructions are Zipf text drawn like the loopback server's (same vocabulary and weights); a share of
them (--edits) are edits of an earlier one (one to four words replaced, dropped or inserted), so that
near-duplicates occur and the exact ROUGE-L path is exercised. Prints,
per stretch of the pool, the microseconds per `offer` and the kept instructions that reach the
candidate stage and the full ROUGE-L per check. Exact answers are checked against brute force on
the first stretch. Linear scaling of the run needs a cost per check that stays flat as the pool grows.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from harness import ROOT, machine, save, table

sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from loopback_server import _zipf_vocab  # noqa: E402

from refed_dspy.text import overlap as text  # noqa: E402


def instructions(n: int, words: int, vocab: int, edits: float, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    vocab_words, cum = _zipf_vocab(vocab)
    out: list[str] = []
    for _ in range(n):
        if out and rng.random() < edits:
            ws = rng.choice(out).rstrip(".").split()
            for _ in range(rng.randint(1, 4)):
                op = rng.random()
                if op < 0.5:
                    ws[rng.randrange(len(ws))] = rng.choices(vocab_words, cum_weights=cum)[0]
                elif op < 0.75 and len(ws) > 1:
                    ws.pop(rng.randrange(len(ws)))
                else:
                    ws.insert(rng.randrange(len(ws) + 1), rng.choices(vocab_words, cum_weights=cum)[0])
            out.append(" ".join(ws) + ".")
        else:
            out.append(" ".join(rng.choices(vocab_words, cum_weights=cum, k=words)).capitalize() + ".")
    return out


class Counting:
    """Counts the full ROUGE-L computations the Deduper makes."""

    def __init__(self):
        self.calls = 0
        self._orig = text.rouge_l

    def __enter__(self):
        def counted(a, b):
            self.calls += 1
            return self._orig(a, b)

        text.rouge_l = counted
        return self

    def __exit__(self, *exc):
        text.rouge_l = self._orig


def brute(items: list[str], threshold: float) -> list[str | None]:
    kept: list[list[str]] = []
    seen: set[str] = set()
    out = []
    for it in items:
        key = text.normalize(it)
        if key in seen:
            out.append("duplicate")
            continue
        toks = text.tokens(it)
        if any(text.rouge_l(toks, k) >= threshold for k in kept):
            out.append("near_duplicate")
            continue
        seen.add(key)
        kept.append(toks)
        out.append(None)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", type=int, default=50000)
    ap.add_argument("--words", type=int, default=14)
    ap.add_argument("--vocab", type=int, default=20000)
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--edits", type=float, default=0.2, help="share of instructions that edit an earlier one")
    ap.add_argument("--verify", type=int, default=1500, help="check the first N against brute force")
    args = ap.parse_args()
    items = instructions(args.pool, args.words, args.vocab, args.edits)
    dd = text.Deduper(args.threshold)
    marks = sorted({m for m in (1000, 5000, 10000, 25000, 50000, 100000) if m <= args.pool} | {args.pool})
    rows, answers, start = [], [], 0
    for mark in marks:
        with Counting() as c:
            t0 = time.perf_counter()
            answers.extend(dd.offer(it) for it in items[start:mark])
            dt = time.perf_counter() - t0
        n = mark - start
        rows.append(
            {
                "checked_up_to": mark,
                "checks": n,
                "us_per_check": round(dt / n * 1e6, 1),
                "rouge_per_check": round(c.calls / n, 2),
                "dropped": sum(a is not None for a in answers[start:mark]),
                "kept": len(dd),
            }
        )
        print(rows[-1], flush=True)
        start = mark
    if args.verify:
        k = min(args.verify, args.pool)
        same = brute(items[:k], args.threshold) == answers[:k]
        print(f"first {k}: identical to brute force: {same}")
        if not same:
            raise SystemExit(1)
    print(table(rows, list(rows[0])))
    print(f"wrote {save('dedup', {'machine': machine(), 'args': vars(args), 'rows': rows})}")


if __name__ == "__main__":
    main()
