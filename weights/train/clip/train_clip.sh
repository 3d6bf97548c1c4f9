#!/usr/bin/env bash
# Trains the shapes CLIP (weights/shapes-clip) from the shapes LLaVA's vision tower: tokenizer,
# preprocessor config, datasets, PyTorch training with its evaluation, the evaluation of the
# saved folder, and the float32 reference for the runtime's check. Run from the repository
# root after `npm ci`:
#
#     bash weights/train/clip/train_clip.sh [MODEL_DIR]        (default weights/shapes-clip)
#
# Needs Debian's python3-torch and python3-numpy (/usr/bin/python3; no pip) and OpenBLAS
# (libopenblas0-pthread; see weights/train/NOTES.md), and weights/shapes-llava for the vision
# tower. Long steps run under `nice -n 19` on two threads. What it reaches and how long it
# takes: NOTES.md, beside this file.
set -euo pipefail

MODEL=${1:-weights/shapes-clip}
DATA=weights/.data/clip
PY=/usr/bin/python3
TRAIN_IMAGES=30000
TRAIN_SEED=1
EVAL_SEED=7
EVAL_IMAGES=1000

export OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2
mkdir -p "$DATA"

echo "== tokenizer and preprocessor config -> $MODEL"
npx tsx weights/train/clip/data_clip.ts words "$DATA/words.json"
$PY weights/train/clip/build_tokenizer.py --words "$DATA/words.json" --out "$MODEL" --context 32
npx tsx weights/train/clip/data_clip.ts preprocessor "$MODEL"

echo "== datasets -> $DATA"
nice -n 19 npx tsx weights/train/clip/data_clip.ts dataset --out "$DATA/train" --images $TRAIN_IMAGES --seed $TRAIN_SEED --texts 8
nice -n 19 npx tsx weights/train/clip/data_clip.ts dataset --out "$DATA/eval-$EVAL_SEED" --images $EVAL_IMAGES --seed $EVAL_SEED

echo "== the model code against transformers' outputs (shared/golden/clip-a), if present"
if [ -d /work/shared/golden/clip-a ]; then $PY weights/train/clip/clip_modeling.py; fi

echo "== training (train_clip.py's defaults; it evaluates and saves every 250 steps)"
nice -n 19 $PY weights/train/clip/train_clip.py --data "$DATA/train" --eval-data "$DATA/eval-$EVAL_SEED" --out "$MODEL" --log "$DATA/train-log.json"

echo "== evaluation of the saved folder, with the phrase probes"
nice -n 19 $PY weights/train/clip/evaluate_clip.py --model "$MODEL" --data "$DATA/eval-$EVAL_SEED" --json "$DATA/eval-$EVAL_SEED-results.json"

echo "== float32 reference -> $DATA/reference.json"
nice -n 19 $PY weights/train/clip/reference.py --model "$MODEL" --data "$DATA/eval-$EVAL_SEED" --out "$DATA/reference.json"
