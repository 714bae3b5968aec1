#!/usr/bin/env bash
# Train and evaluate the driving world model on one GPU in <= 8 minutes; pack weights and results into <= 8 files.
#
#   bash scripts/gpu_train_driving.sh            # on a GPU box, from the repository root
#
# The recipe (docs/gpu.md): the `driving-gpu` preset (recipe v3 on a 3.2 M-parameter UNet, global batch 128,
# 4000 steps, bf16 where the GPU has it), launched through Hugging Face Accelerate, so the same line runs on N GPUs
# (NPROC=N) with the batch split across them. Then held-out PSNR/SSIM per horizon against copy-last
# (`genex eval-world-model --no-oracle`: the oracle replays MuJoCo on the CPU, which a GPU box may lack).
#
# Needs the recordings data/wm/{train,heldout}/<scene> (`genex record`, commands in checkpoints/world_model/driving/
# README.md; on a device runner: carry them). What comes back under $OUT (default ./gpu_out): model.tar (weights +
# config.json), metrics.csv, run.json, eval.json, train.log, eval.log, env.txt: 7 files.
# Knobs: NPROC (processes, default 1), DEV (cuda), PREC (bf16), CONFIG (driving-gpu), STEPS (preset's),
# TRAIN_S (wall-clock cap of training, default 330 s), EVAL_EPISODES (per scene, default 8), LAUNCH (accelerate
# launch command). A CPU smoke test of the plumbing (what tests/test_gpu_recipe.py runs, on synthetic data):
#   DEV=cpu PREC=fp32 CONFIG=tiny STEPS=4 DATA_ROOT=/tmp/d OUT=/tmp/o bash scripts/gpu_train_driving.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}; R=${R:-$(mktemp -d)}
NPROC=${NPROC:-1}; DEV=${DEV:-cuda}; PREC=${PREC:-bf16}; CONFIG=${CONFIG:-driving-gpu}
TRAIN_S=${TRAIN_S:-330}; EVAL_EPISODES=${EVAL_EPISODES:-8}; DATA_ROOT=${DATA_ROOT:-data/wm}
SCENES=${SCENES:-"OccludedCrosswalk StoppedLeadCar OccludedLeftTurn"}
PY=${PY:-python3}
MULTI=""; [ "$NPROC" -le 1 ] || MULTI="--multi_gpu"  # without it accelerate may quietly start one process
LAUNCH=${LAUNCH:-"$PY -m accelerate.commands.launch $MULTI --num_processes $NPROC --num_machines 1 --mixed_precision no --dynamo_backend no"}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p "$OUT"
{ date -u; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi";
  $PY -c "import torch, accelerate; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'accelerate', accelerate.__version__)"; } > "$OUT/env.txt" 2>&1
TRAIN=(); HELD=()
for s in $SCENES; do
  [ -d "$DATA_ROOT/train/$s" ] || { echo "missing $DATA_ROOT/train/$s (record it: see checkpoints/world_model/driving/README.md)" >&2; exit 2; }
  TRAIN+=(--data "$DATA_ROOT/train/$s"); HELD+=(--data "$DATA_ROOT/heldout/$s")
done
START=$(date +%s)
STEPS_ARG=(); [ -z "${STEPS:-}" ] || STEPS_ARG=(--max-steps "$STEPS")
# the training cap keeps the call inside its budget; the run checkpoints every 500 steps, so a cut run still packs
timeout "$TRAIN_S" $LAUNCH -m genex.cli train-world-model "${TRAIN[@]}" --config "$CONFIG" --device "$DEV" \
  --precision "$PREC" --quiet --out "$R/run" "${STEPS_ARG[@]}" > "$OUT/train.log" 2>&1 || echo "training ended with $? (124: the time cap)" >> "$OUT/train.log"
echo "trained in $(( $(date +%s) - START )) s" >> "$OUT/train.log"
MODEL="$R/run/model"
[ -f "$MODEL/weights.safetensors" ] || MODEL=$(ls -d "$R"/run/checkpoints/* 2>/dev/null | tail -1)
[ -n "$MODEL" ] && [ -f "$MODEL/weights.safetensors" ] || { echo "no weights written" >> "$OUT/train.log"; exit 1; }
tar cf "$OUT/model.tar" -C "$(dirname "$MODEL")" "$(basename "$MODEL")"
cp "$R/run/metrics.csv" "$R/run/run.json" "$OUT/" 2>/dev/null || true
START=$(date +%s)
$PY -m genex.cli eval-world-model --checkpoint "$MODEL" "${HELD[@]}" --out "$R/eval" --no-oracle \
  --max-episodes "$EVAL_EPISODES" --device "$DEV" > "$OUT/eval.log" 2>&1 || echo "eval failed: $?" >> "$OUT/eval.log"
echo "evaluated in $(( $(date +%s) - START )) s" >> "$OUT/eval.log"
cp "$R/eval/metrics.json" "$OUT/eval.json" 2>/dev/null || true
ls "$OUT"
