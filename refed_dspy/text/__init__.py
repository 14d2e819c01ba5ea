"""Text measured without an LM: normalization, tokens, ROUGE-L and instruction dedup (overlap), closeness to a
reference (closeness), benchmark prompts found in data by their rendered text (contamination), word diffs (overlap), and
a count in words (counts)."""
