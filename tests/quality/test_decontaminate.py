"""Decontamination end to end: a loopback run whose benchmark file holds 8 of its instructions (4 verbatim, 4 with
two words changed) among 200 unrelated prompts. `refed filter --apply decontaminate` removes exactly those 8 with
reasons naming the benchmark, report.json's contamination block counts 8, the dataset card names the benchmark and
the 8, and `refed export` of the unfiltered run warns in one line. No LM call is made by any of it."""

import json
import random
import re

import pytest
from cli_helpers import lines, refed
from conftest import run_overrides
from loopback_server import read_log

from refed_dspy.config import load_config
from refed_dspy.errors import ConfigError
from refed_dspy.filters import FILTERS, decontaminate, make_filter
from refed_dspy.quality.contamination import contamination
from refed_dspy.quality.filter_run import filter_run
from refed_dspy.quality.report import build_report
from refed_dspy.synthesis.api import synthesize

BENCH = "evals/alpaca_eval.jsonl"
TOPICS = ["volcanoes", "tax law", "jazz", "orbital mechanics", "sourdough", "chess openings", "glaciers", "poetry"]


def two_words_changed(instruction: str) -> str:
    """The first and the last word replaced: 5 of a 14-word instruction's 7 8-grams survive (6 of 8 of 15 words)."""
    ws = instruction.rstrip(".").split()
    ws[0], ws[-1] = "Kindly", "tomorrow"
    return " ".join(ws) + "."


def unrelated(n: int) -> list[str]:
    rng = random.Random(3)
    return [
        f"In {rng.randint(3, 9)} sentences, tell a curious reader number {i} what is surprising about "
        f"{rng.choice(TOPICS)} and why it matters today."
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def contaminated(tmp_path_factory):
    """A 40-sample loopback run, a benchmark file holding 8 of its instructions among 200 others, and a config file
    whose [quality] names that file as a plain path (relative to the working directory)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from loopback_server import LoopbackServer, ServerConfig

    tmp = tmp_path_factory.mktemp("decontam")
    log = tmp / "server.jsonl"
    with LoopbackServer(ServerConfig(log_path=str(log))) as srv:
        synthesize(load_config(None, run_overrides(srv, tmp / "run", 40)))
    samples = lines(tmp / "run" / "samples.jsonl")
    # the edited ones without a hyphen: `trade-offs` is one word to the edit and two to the 8-grams (16 of them)
    chosen = samples[3::5][:4] + [s for s in samples[4::5] if "-" not in s["instruction"]][:4]
    prompts = [s["instruction"] for s in chosen[:4]] + [two_words_changed(s["instruction"]) for s in chosen[4:]]
    rows = [{"instruction": p, "dataset": "held-out"} for p in prompts + unrelated(200)]
    random.Random(0).shuffle(rows)
    (tmp / "evals").mkdir()
    (tmp / BENCH).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp / "quality.toml").write_text(f'[quality]\nbenchmarks = ["{BENCH}"]\n')
    return {
        "tmp": tmp,
        "run": tmp / "run",
        "samples": samples,
        "chosen": [s["meta"]["id"] for s in chosen],
        "calls": len(read_log(log)),
    }


@pytest.fixture(scope="module")
def cleaned(contaminated):
    """`refed filter RUN --out DIR --config FILE --apply decontaminate`, run once: (exit code, stdout, stderr)."""
    tmp = contaminated["tmp"]
    p = refed("filter", "run", "--out", "clean", "--config", "quality.toml", "--apply", "decontaminate", cwd=tmp)
    out, err = p.communicate(timeout=300)
    return p.returncode, out, err


def test_filter_removes_exactly_the_8_with_reasons_naming_the_benchmark_and_the_prompt(contaminated, cleaned):
    tmp = contaminated["tmp"]
    code, out, err = cleaned
    assert code == 0, err
    assert "decontaminate" in out and "kept 32 of 40 samples" in out
    rejects = lines(tmp / "clean" / "rejects.jsonl")
    assert sorted(r["item_id"] for r in rejects) == sorted(contaminated["chosen"])
    by_id = {s["meta"]["id"]: s for s in contaminated["samples"]}
    for r in rejects:
        assert r["filter"] == "decontaminate"
        assert f'matches benchmark "{BENCH}" prompt ' in r["reason"], r["reason"]
        assert r["reason"].startswith("instruction matches")
    exact = [r for r in rejects if "(the same after normalization)" in r["reason"]]
    assert len(exact) == 4 and all(json.dumps(by_id[r["item_id"]]["instruction"]) in r["reason"] for r in exact)
    shared = [r for r in rejects if re.search(r"\((71|75)% of 8-grams shared\)$", r["reason"])]  # 5 of 7, 6 of 8
    assert len(shared) == 4
    summary = json.loads((tmp / "clean" / "filter_summary.json").read_text())
    params = summary["steps"][0]["params"]
    assert (params["ngram"], params["share"], params["check_responses"]) == (8, 0.5, False)
    assert params["benchmarks"] == [{"source": str(tmp / BENCH), "split": "train", "name": BENCH}]  # reads anywhere


def test_report_counts_the_8_per_benchmark_and_shows_the_pairs(contaminated):
    tmp, run = contaminated["tmp"], contaminated["run"]
    p = refed("report", "run", "--config", "quality.toml", cwd=tmp)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert f"benchmarks   8 of 40 samples match a benchmark prompt ({BENCH} 8)" in out
    block = json.loads((run / "report.json").read_text())["contamination"]
    assert block["checked"] and (block["matched"], block["samples"], block["removed"]) == (8, 40, 0)
    assert block["benchmarks"] == [
        {
            "name": BENCH,
            "source": str(tmp / BENCH),
            "local": True,
            "prompts": 208,
            "matched": 8,
            "share": 0.2,
            "removed": 0,
        }
    ]
    assert sorted(pair["sample_id"] for pair in block["pairs"]) == sorted(contaminated["chosen"])
    assert {pair["how"] for pair in block["pairs"]} == {"exact", "ngram"}
    page = (run / "report.html").read_text()
    assert "Benchmark contamination" in page and "Matched pairs (8)" in page
    first = block["pairs"][0]
    assert json.dumps(first["text"])[1:-1].split(" ")[0] in page


def test_the_filtered_dir_reports_and_exports_what_was_removed(contaminated, cleaned):
    tmp = contaminated["tmp"]
    assert cleaned[0] == 0, cleaned[2]
    p = refed("report", "clean", cwd=tmp)  # its config.toml has no [quality]: the filter step says what it checked
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    block = json.loads((tmp / "clean" / "report.json").read_text())["contamination"]
    assert (block["matched"], block["removed"], block["benchmarks"][0]["removed"]) == (0, 8, 8)
    assert "decontaminate removed 8" in out
    clean = str(tmp / "clean")
    p = refed("export", clean, "--format", "messages", "--out", "exported", cwd=tmp.parent)  # another directory
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0 and "benchmark" not in err, err  # (a line on the split's share may come)
    card = (tmp.parent / "exported" / "README.md").read_text()
    section = card.split("## Benchmark contamination", 1)[1].split("## License", 1)[0]
    assert f"| {BENCH} | local file alpaca_eval.jsonl | 208 | 0 | 8 |" in section
    assert "None of the 32 samples matches a benchmark prompt." in section and "8-grams" in section
    assert str(tmp) not in card  # no local path of this machine in a card to publish


def test_export_of_the_unfiltered_run_warns_in_one_line_and_the_card_says_8(contaminated):
    tmp = contaminated["tmp"]
    p = refed("export", "run", "--format", "alpaca", "--out", "raw", "--config", "quality.toml", cwd=tmp)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    warned = [line for line in err.splitlines() if "benchmark" in line]
    assert len(warned) == 1 and f"8 exported samples match benchmark prompts ({BENCH}: 8)" in warned[0]
    assert "Traceback" not in err
    card = (tmp / "raw" / "README.md").read_text()
    assert f"| {BENCH} | local file alpaca_eval.jsonl | 208 | 8 | 0 |" in card
    assert "**8 of the 40 samples match a benchmark prompt.**" in card
    assert contaminated["calls"] == len(read_log(tmp / "server.jsonl"))  # none of it called an LM


def test_from_python_the_filter_takes_its_own_benchmarks_or_the_runs_quality(contaminated, tmp_path):
    samples, chosen = contaminated["samples"], contaminated["chosen"]
    bench = str(contaminated["tmp"] / BENCH)
    result = decontaminate(samples, [bench])
    assert sorted(s["meta"]["id"] for s, _ in result.removed) == sorted(chosen) and len(result.kept) == 32
    spec = make_filter("decontaminate", benchmarks=[bench], share=1.0)  # the 4 edited ones share 71% or 75%
    assert len(spec.apply(samples, {}).removed) == 4
    assert "decontaminate" in FILTERS
    cfg = load_config(None, [f"quality.benchmarks=['{bench}']"])
    summary = filter_run(contaminated["run"], tmp_path / "py", [make_filter("decontaminate")], config=cfg)
    assert summary["removed_by_filter"] == {"decontaminate": 8}
    report = build_report(contaminated["run"], cfg)
    assert report["contamination"]["matched"] == 8
    assert contamination(samples, [], load_config(), [])["checked"] is False  # nothing configured: not checked
    with pytest.raises(ConfigError, match="has no benchmarks to check against"):
        make_filter("decontaminate").apply(samples, {})


@pytest.mark.parametrize(
    "apply, message",
    [
        ("decontaminate", "filter 'decontaminate' has no benchmarks to check against: set [quality] benchmarks"),
        ("decontaminate:benchmarks=evals/missing.jsonl", "file not found: evals/missing.jsonl"),
        ("decontaminate:benchmarks=alpaca-evl", "benchmark 'alpaca-evl' is neither a preset"),
        ("decontaminate:benchmarks=evals/questions.jsonl", "its rows have no field instruction or prompt"),
        ("decontaminate:share=2", "filters.0.share: input should be less than or equal to 1"),
    ],
)
def test_bad_benchmarks_are_one_line_exit_2_and_nothing_written(contaminated, tmp_path, apply, message):
    (tmp_path / "evals").mkdir()
    (tmp_path / "evals" / "questions.jsonl").write_text('{"question": "What is 2 + 2?"}\n')
    run = str(contaminated["run"])
    p = refed("filter", run, "--out", "out", "--apply", apply, cwd=tmp_path)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


# ---- text tricks (issue 52, item 6): 30 planted variants of prompts of a 200-prompt benchmark among 1,000 unrelated
# instructions written in the same register; at the defaults at least 27 removed, at most 1 unrelated one ------------
OPENERS = [  # the register both share: how an instruction starts
    "Explain how {a}",
    "Write a short piece about how {a}",
    "Describe for a beginner how {a}",
    "What should a student know about how {a}",
    "Give me a clear account of how {a}",
    "Summarize in plain words how {a}",
]
BENCH_CLAUSES = [
    "changed over the last century and what drove the change",
    "affects people who live in large cities",
    "is taught in schools, with one example",
    "could look in fifty years if current trends continue",
    "is often misunderstood by the public and why",
    "influenced a famous event in history",
    "works, step by step, with a simple analogy",
    "is measured and what the numbers tell us",
]
OTHER_CLAUSES = [
    "differs between two countries you know well",
    "would be explained by a grandparent at dinner",
    "fits into a typical working day",
    "appears in films and novels, with two titles",
    "saves or costs money for an ordinary family",
    "got its name and what the name means",
    "can go wrong and how experts fix it",
    "sounds to a child hearing of it for the first time",
]
BENCH_TOPICS = [
    "photosynthesis",
    "the stock market",
    "a heat pump",
    "compound interest",
    "jazz improvisation",
    "the immune system",
    "plate tectonics",
    "public libraries",
    "the printing press",
    "beekeeping",
    "container shipping",
    "urban gardening",
    "the water cycle",
    "solar panels",
    "chess openings",
    "the Roman aqueducts",
    "vaccines",
    "sourdough bread",
    "recycling plastics",
    "the electoral college",
    "black holes",
    "coral reefs",
    "machine translation",
    "bird migration",
    "the blockchain",
    "volcanic eruptions",
    "public transport",
    "the human heart",
    "origami",
    "wind turbines",
    "classical ballet",
    "the Silk Road",
    "tide pools",
    "credit scores",
    "the periodic table",
    "street photography",
    "noise pollution",
    "carbon capture",
    "the Olympic Games",
    "night skies",
]
OTHER_TOPICS = [
    "quantum tunnelling",
    "the bond market",
    "a refrigerator",
    "simple interest",
    "flamenco guitar",
    "the nervous system",
    "ocean currents",
    "community theatres",
    "the telegraph",
    "mushroom foraging",
    "air traffic control",
    "rooftop farming",
    "the carbon cycle",
    "hydroelectric dams",
    "poker strategy",
    "medieval castles",
    "antibiotics",
    "cheese making",
    "composting food waste",
    "parliamentary democracy",
    "neutron stars",
    "mangrove forests",
    "speech recognition",
    "whale songs",
    "cloud computing",
    "earthquakes",
    "cycling lanes",
    "the human liver",
    "calligraphy",
    "nuclear fusion",
    "hip hop dance",
    "the spice trade",
    "sand dunes",
    "student loans",
    "the metric system",
    "wildlife photography",
    "light pollution",
    "electric cars",
    "the Paralympic Games",
    "deep sea vents",
    "sign language",
    "the Great Barrier Reef",
    "typography",
    "bridge engineering",
    "tea ceremonies",
    "glass blowing",
    "rainforest canopies",
    "sleep cycles",
    "the printing of banknotes",
    "lighthouses",
    "submarine cables",
    "bonsai trees",
    "the pyramids of Giza",
    "weather balloons",
    "fermented vegetables",
    "marathon training",
    "crossword puzzles",
    "the Hubble telescope",
    "hot air balloons",
    "stained glass windows",
    "sheepdog trials",
    "desert irrigation",
    "the Amazon river",
    "vinyl records",
    "board game design",
    "ice hockey",
    "paper making",
    "the Fibonacci sequence",
    "honey badgers",
    "opera singing",
    "bamboo construction",
    "the postal service",
    "snow avalanches",
    "carnival parades",
    "the compass",
    "kite surfing",
    "pottery glazes",
    "monarch butterflies",
    "the Dead Sea",
    "invasive species",
    "maple syrup",
    "steam locomotives",
    "the cello",
    "solar eclipses",
    "shipwreck diving",
    "wool spinning",
    "bicycle repair",
]
FULL_WIDTH = {c: chr(ord(c) + 0xFEE0) for c in "abcdefghijklmnopqrstuvwxyz"}


def from_templates(topics: list[str], clauses: list[str], n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        text = rng.choice(OPENERS).format(a=rng.choice(topics)) + " " + rng.choice(clauses) + "."
        if text not in out:
            out.append(text)
    return out


def planted(prompts: list[str]) -> list[tuple[str, str, str]]:
    """30 variants of benchmark prompts, (kind, prompt, variant): 21 that render as the prompt does, 5 with a filler word every
    seven words, 4 with one word changed in the middle of an 11-to-14-word prompt."""
    cyrillic = str.maketrans({"a": "\u0430", "e": "\u0435", "o": "\u043e", "p": "\u0440", "c": "\u0441"})
    tricks = {
        "zero-width spaces": lambda p: " ".join(w[:2] + "\u200b" + w[2:] if len(w) > 4 else w for w in p.split()),
        "soft hyphens": lambda p: " ".join(w[:3] + "\u00ad" + w[3:] if len(w) > 6 else w for w in p.split()),
        "zero-width joiners": lambda p: " ".join(w[:3] + "\u200d" + w[3:] if len(w) > 5 else w for w in p.split()),
        "tag characters": lambda p: p.replace(" ", " \U000e0020", 3) + "\U000e0041\U000e007f",
        "combining accents": lambda p: p.replace("e", "e\u0301", 2),
        "Cyrillic look-alikes": lambda p: p.translate(cyrillic),
        "full-width letters": lambda p: "".join(FULL_WIDTH.get(c, c) for c in p),
    }
    out = []
    for i, (kind, trick) in enumerate(sorted(tricks.items()) * 3):
        out.append((kind, prompts[i], trick(prompts[i])))
    long_ones = [p for p in prompts[21:] if len(p.split()) >= 14][:5]
    for p in long_ones:
        padded = " ".join(w + (" really" if i % 7 == 6 else "") for i, w in enumerate(p.split()))
        out.append(("a filler word every seven words", p, padded))
    mid = [p for p in prompts[21:] if 11 <= len(p.split()) <= 14 and p not in long_ones][:4]
    for p in mid:
        ws = p.split()
        ws[len(ws) // 2] = "wonderful" if ws[len(ws) // 2] != "wonderful" else "lovely"
        out.append(("one word changed in the middle", p, " ".join(ws)))
    assert len(out) == 30, len(out)
    return out


def test_text_tricks_do_not_evade_decontamination_and_the_same_register_is_not_flagged(tmp_path):
    prompts = from_templates(BENCH_TOPICS, BENCH_CLAUSES, 200, seed=1)
    others = from_templates(OTHER_TOPICS, OTHER_CLAUSES, 1000, seed=2)
    variants = planted(prompts)
    assert all(variant != prompt for _, prompt, variant in variants), [v for v in variants if v[1] == v[2]]
    samples = [
        {"instruction": text, "response": "An answer.", "meta": {"id": f"{kind}#{i}", "reference_id": "r"}}
        for i, (kind, text) in enumerate([*((k, v) for k, _, v in variants), *(("other", o) for o in others)])
    ]
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps({"instruction": p}) + "\n" for p in prompts))
    result = decontaminate(samples, [str(bench)])  # the defaults: ngram 8, share 0.5
    removed = [s["meta"]["id"] for s, _ in result.removed]
    caught = [r for r in removed if not r.startswith("other#")]
    flagged = [r for r in removed if r.startswith("other#")]
    missed = sorted({s["meta"]["id"].split("#")[0] for s in result.kept} - {"other"})
    assert len(caught) >= 27, f"missed kinds: {missed}"
    assert len(flagged) <= 1, [s["instruction"] for s, _ in result.removed if s["meta"]["id"] in flagged]
