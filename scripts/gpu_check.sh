#!/usr/bin/env bash
# Issue #5's GPU check, prepared so that a session with a lent GPU spends its minutes measuring:
#   1. `bench --render-only` on the GPU: the neural renderer's frames/s with several portraits per
#      forward pass, fp16 and bf16 (channels_last), and with torch.compile when COMPILE=1;
#   2. the full `bench` (decode, landmarks, render, paste-back, encode, floor) where dlib is installed;
#   3. the full-resolution detail (scripts/gpu_detail.py): the GPU's restored faces against the CPU's, timed;
#   4. a batch of PORTRAITS portraits × a DRIVER_SECONDS driver (scripts/gpu_batch.py), --group GROUP;
#      with BARE_PORTRAITS > 0, then that many again without gaze and mouth painting (into $OUT/bare).
# Everything lands in $OUT: log.txt, bench.jsonl (one JSON line per bench run), detail.json and two PNGs,
# batch.json, batch_lines.jsonl.
#
# Once, on this machine (not the GPU one): scripts/gpu_check.sh prepare
#   puts imageio-ffmpeg's wheel (the ffmpeg that encodes the batch's MP4s, 29 MB) in .whl/, which git
#   ignores; the GPU image has torch, numpy, scipy, PIL, scikit-image, typer, rich and safetensors, but
#   neither ffmpeg nor dlib (its 100 MB landmark model does not fit the 64 MiB that travels).
# On the GPU machine (the device tool's run): command "bash scripts/gpu_check.sh", carry [".whl"],
#   timeout_s 540. About 1 minute of benches, then the batch (stopped at BATCH_LIMIT seconds).
# Check the script on a CPU first, with tiny counts:
#   OUT=/tmp/gpu_check DEVICE=cpu PORTRAITS=2 DRIVER_SECONDS=0.5 FRAMES=8 GROUP=2 bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "prepare" ]]; then
  mkdir -p .whl
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 -d .whl imageio-ffmpeg==0.6.0 || exit 1
  du -sh .whl
  exit 0
fi

DEVICE=${DEVICE:-cuda}
PORTRAITS=${PORTRAITS:-100}
DRIVER_SECONDS=${DRIVER_SECONDS:-10}
FRAMES=${FRAMES:-120}          # driver frames per bench run
GROUP=${GROUP:-16}             # portraits per forward pass
COMPILE=${COMPILE:-0}
BATCH_LIMIT=${BATCH_LIMIT:-420}
PY=${PYTHON:-python3}
OUT=${OUT:?set OUT to a folder for the results}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

say() { echo "[$(date +%T)] $*" | tee -a "$LOG"; }
# Each step runs whatever the one before it did: a failure is logged, and the next measurement still runs.
step() { say "+ $*"; "$@" 2>>"$LOG"; local rc=$?; [[ $rc == 0 ]] || say "step failed (exit $rc): $*"; return 0; }

if ! $PY -c "import imageio_ffmpeg" 2>/dev/null && ls .whl/imageio_ffmpeg-*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/imageio_ffmpeg-*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
say "device=$DEVICE portraits=$PORTRAITS driver=${DRIVER_SECONDS}s frames=$FRAMES group=$GROUP compile=$COMPILE"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >>"$LOG" 2>&1 || say "no nvidia-smi"
$PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())" >>"$LOG" 2>&1
HAVE_FFMPEG=$($PY -c "import imageio_ffmpeg; imageio_ffmpeg.get_ffmpeg_exe()" >/dev/null 2>&1 && echo 1 || echo 0)
HAVE_DLIB=$($PY -c "from animate_portrait.landmarks.dlib_backend import _model_path; _model_path('shape_predictor_68_face_landmarks.dat')" >/dev/null 2>&1 && echo 1 || echo 0)
say "ffmpeg: $HAVE_FFMPEG, dlib: $HAVE_DLIB"

bench() {  # bench LABEL ARGS...: one JSON line, labelled, appended to bench.jsonl
  local label=$1; shift
  local line
  line=$($PY -m animate_portrait bench --engine neural --device "$DEVICE" --max-frames "$FRAMES" --json "$@" 2>>"$LOG") \
    || { say "bench $label failed"; return 0; }
  echo "{\"run\": \"$label\", \"result\": $line}" >>"$OUT/bench.jsonl"
  say "bench $label: $(echo "$line" | $PY -c "import json,sys; r=json.load(sys.stdin); print(r['batched']['fps'], 'frames/s batched;', r['ms_per_frame'])")"
}

bench render_fp16 --render-only --group "$GROUP" --render-batch $((GROUP * 8)) --precision fp16
bench render_bf16 --render-only --group "$GROUP" --render-batch $((GROUP * 8)) --precision bf16
bench render_bf16_x2 --render-only --group $((GROUP * 2)) --render-batch $((GROUP * 16)) --precision bf16
bench render_fp32_one --render-only --group 1 --render-batch 8 --precision fp32
[[ $COMPILE == 1 ]] && bench render_bf16_compiled --render-only --group "$GROUP" --render-batch $((GROUP * 8)) --precision bf16 --compile
if [[ $HAVE_FFMPEG == 1 && $HAVE_DLIB == 1 ]]; then
  bench full_fp16 --group "$GROUP" --render-batch $((GROUP * 8))
else
  say "full bench skipped: it needs ffmpeg and dlib (ffmpeg=$HAVE_FFMPEG dlib=$HAVE_DLIB)"
fi

step timeout 120 $PY scripts/gpu_detail.py --device "$DEVICE" --out "$OUT"
[[ -f "$OUT/detail.json" ]] && cat "$OUT/detail.json" | tee -a "$LOG"

if [[ $HAVE_FFMPEG == 1 ]]; then
  step timeout "$BATCH_LIMIT" $PY scripts/gpu_batch.py --device "$DEVICE" --portraits "$PORTRAITS" \
    --seconds "$DRIVER_SECONDS" --group "$GROUP" --out "$OUT"
  [[ -f "$OUT/batch.json" ]] && cat "$OUT/batch.json" | tee -a "$LOG"
  # the same, fewer portraits, without the per-frame CPU stages (irises, mouth painting): the difference is
  # what they cost a GPU batch, whose render takes ~1-2 ms a frame (session 16: 80 portraits in 140 s;
  # session 18, H200: a group of 16 took 19.5-20.8 s with them and 11.2-13.6 s without, before group.py made
  # the next chunk in a thread; PORTRAITS=48 BATCH_LIMIT=120 lets the first run finish and write batch.json)
  if [[ ${BARE_PORTRAITS:-0} -gt 0 ]]; then
    step timeout "$BATCH_LIMIT" $PY scripts/gpu_batch.py --device "$DEVICE" --portraits "$BARE_PORTRAITS" \
      --seconds "$DRIVER_SECONDS" --group "$GROUP" --out "$OUT/bare" --no-gaze --no-mouth
    [[ -f "$OUT/bare/batch.json" ]] && cat "$OUT/bare/batch.json" | tee -a "$LOG"
  fi
else
  say "batch skipped: no ffmpeg (run 'scripts/gpu_check.sh prepare' here and carry .whl)"
fi
say "done"
