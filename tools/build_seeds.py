"""Write refed_dspy/data/seeds.jsonl from the seed texts in this folder (run by hand)."""

import json
import re
from pathlib import Path

from seeds_part1 import SEEDS as A
from seeds_part2 import SEEDS as B

out = Path(__file__).resolve().parent.parent / "refed_dspy" / "data" / "seeds.jsonl"
out.parent.mkdir(exist_ok=True)
with out.open("w", encoding="utf-8") as fh:
    for category, instruction, response in A + B:
        fh.write(
            json.dumps(
                {"instruction": instruction.strip(), "response": response.strip(), "category": category},
                ensure_ascii=False,
            )
            + "\n"
        )
words = [len(re.findall(r"\S+", r)) for _, _, r in A + B]
print(len(words), "pairs; response words min", min(words), "max", max(words), "mean", sum(words) // len(words))
