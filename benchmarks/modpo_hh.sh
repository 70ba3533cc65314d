#!/usr/bin/env bash
# MODPO against linear scalarisation on HH-RLHF at the same training budget, judged by a learned reward model
# (BENCHMARKS.md, "MODPO on HH-RLHF"). Stages whose output exists are skipped, so a rerun continues.
#   bash benchmarks/modpo_hh.sh            # OUT=runs/modpo-hh STEPS=60 RM_STEPS=80 MARGIN_STEPS=60
# 1. split the HH files: 24 + 24 single-turn front prompts held out of every training file;
# 2. the judge: a two-head reward model (helpful, harmless) on both files;
# 3. MODPO's margin: a separate harmlessness reward model (harmless file only, another seed, shorter texts);
# 4. linear scalarisation (DPO, both files) at (1,0), (0.5,0.5), (0,1) and MODPO (helpful pairs, harmless margin)
#    at (0.8,0.2), (0.5,0.5), (0.2,0.8): STEPS x 8 pairs each;
# 5. the fronts, judged by the judge's two heads on the held-out prompts (greedy, 32 new tokens).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/modpo-hh}
STEPS=${STEPS:-60}
RM_STEPS=${RM_STEPS:-80}
MARGIN_STEPS=${MARGIN_STEPS:-60}
PY=${PYTHON:-python}
M="$PY -m moalign"
HELPFUL=$OUT/data/helpful-train.jsonl
HARMLESS=$OUT/data/harmless-train.jsonl
RM="$M train rm --model smollm2 --adapter hh_rlhf --eval_fraction 0.1 --per_device_batch_size 8 --learning_rate 5e-4
    --lora_r 16 --lora_alpha 32 --logging_steps 10 --eval_before false --overwrite"

[ -f "$OUT/data/front.jsonl" ] || $PY benchmarks/hh_split.py --out "$OUT/data" --front 24
[ -d "$OUT/rm-judge/final" ] || $RM --train_files "$HELPFUL,$HARMLESS" --file_objectives helpful,harmless \
    --max_length 128 --max_prompt_length 64 --max_steps "$RM_STEPS" --output_dir "$OUT/rm-judge"
[ -d "$OUT/rm-margin/final" ] || $RM --train_files "$HARMLESS" --file_objectives harmless --seed 1 \
    --max_length 64 --max_prompt_length 32 --max_steps "$MARGIN_STEPS" --output_dir "$OUT/rm-margin"

for w in 1,0 0.5,0.5 0,1; do
  [ -d "$OUT/linear-${w%%,*}/final" ] || $M train dpo --config examples/dpo_hh_smollm2.yaml --rule linear \
      --preference "$w" --train_files "$HELPFUL,$HARMLESS" --max_steps "$STEPS" --save_steps 0 --overwrite \
      --output_dir "$OUT/linear-${w%%,*}"
done
for w in 0.8,0.2 0.5,0.5 0.2,0.8; do
  [ -d "$OUT/modpo-${w%%,*}/final" ] || $M train modpo --config examples/modpo_hh_smollm2.yaml --preference "$w" \
      --train_files "$HELPFUL" --margin_rewards "harmless=rm:$OUT/rm-margin/final" --max_steps "$STEPS" \
      --save_steps 0 --overwrite --output_dir "$OUT/modpo-${w%%,*}"
done

$M eval front --methods "linear=models:$OUT/linear-1+$OUT/linear-0.5+$OUT/linear-0,modpo=models:$OUT/modpo-0.8+$OUT/modpo-0.5+$OUT/modpo-0.2,base" \
    --objectives helpful,harmless \
    --judges "helpful=rm:$OUT/rm-judge/final:helpful,harmless=rm:$OUT/rm-judge/final:harmless" \
    --prompts "$OUT/data/front.jsonl" --prompt-adapter hh_rlhf --max-new-tokens 32 --model smollm2 --out "$OUT/front"
