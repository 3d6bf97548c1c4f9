#!/usr/bin/env bash
# Retrains the bundled shapes model from nothing: tokenizer, dataset, PyTorch training,
# evaluation in PyTorch and through the runtime, and the test fixture. Run from the repository
# root after `npm ci`:
#
#     bash weights/train/train.sh [MODEL_DIR]        (default weights/shapes-llava)
#
# Needs Debian's python3-torch and python3-numpy (/usr/bin/python3; no pip), and OpenBLAS
# (apt-get install libopenblas0-pthread): Debian's torch otherwise calls the much slower
# reference BLAS. Long steps run under `nice -n 19` and two threads, so the machine stays
# usable. How long each part takes, and what the recipe reaches: NOTES.md.
set -euo pipefail

MODEL=${1:-weights/shapes-llava}
DATA=weights/.data
PY=/usr/bin/python3
TRAIN_IMAGES=30000
TRAIN_SEED=1
EVAL_SEED=7
EVAL_N=500

export OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2

echo "== tokenizer and preprocessor config -> $MODEL"
npx tsx weights/train/data.ts model-files "$MODEL"
npx tsx weights/train/data.ts example "$MODEL" --seed 2025

echo "== datasets -> $DATA"
nice -n 19 npx tsx weights/train/data.ts dataset --model "$MODEL" --out "$DATA/train" --images $TRAIN_IMAGES --seed $TRAIN_SEED
nice -n 19 npx tsx weights/train/data.ts dataset --model "$MODEL" --out "$DATA/eval-$EVAL_SEED" --images $EVAL_N --seed $EVAL_SEED --kind eval

# One run of train.py with its defaults (6500 steps; its docstring says how it trains), with the
# evaluation set measured every 500 steps as it goes (measuring changes nothing in the weights).
echo "== training (6500 steps)"
nice -n 19 $PY weights/train/train.py --data "$DATA/train" --eval-data "$DATA/eval-$EVAL_SEED" --out "$MODEL"

echo "== evaluation: the runtime (f32), then PyTorch and their agreement, and the test fixture"
nice -n 19 npx tsx src/cli/main.ts eval --model "$MODEL" --n $EVAL_N --seed $EVAL_SEED --json --quiet > "$DATA/eval-$EVAL_SEED-runtime.json"
nice -n 19 $PY weights/train/evaluate.py --model "$MODEL" --data "$DATA/eval-$EVAL_SEED" --runtime "$DATA/eval-$EVAL_SEED-runtime.json" \
  --fixture test/fixtures/shapes/teacher_forced.safetensors --fixture-examples 30
