#!/usr/bin/env bash
# One GPU training burst, as run by the device tool:  bash scripts/gpu_train.sh   (carry: .gpu cache/train)
#
# Needs only what the GPU image has (python3 with torch, safetensors, numpy, pillow, cv2) plus the carried
# prepared cache (cache/train: per-clip MP4 + npz) and .gpu/mobilenet_v2.safetensors. Steps:
#   1. print the device and torch version;
#   2. a 30-second smoke run on 4 clips (the whole path: data, all losses, checkpoint, export), which also
#      prints the step rate;
#   3. the main run with a hard wall budget (MINUTES), the adversarial terms from 60% of that time on;
#   4. copy the fp16 weights (split in <16 MiB parts) + cards (final, and the warm-up snapshot taken when the
#      adversarial phase starts), the loss log and the last sample grid into $OUT (8 files).
# Environment knobs: MINUTES (default 6.5), BUDGET (505 s for the whole script), BATCH (48), CACHE (cache/train),
# OUT (runs/gpu_out), DEVICE, EXTRA, EXTRA1, EXTRA2, SMOKE (1; 0 skips step 2 once the path is known to work),
# PROBE_STEPS (0; N > 0 first runs scripts/d_probe.py for N steps with each hinge).
# The second burst (session 5, H200; the first model's blend mask had saturated at 1, so its decoder never drew):
#   SMOKE=0 MINUTES=6 BUDGET=450 EXTRA='--init weights/neural.safetensors --reset-mask true --w-mask 1 --w-mouth 10' \
#       bash scripts/gpu_train.sh
# restarts from the shipped weights with the mask at 0.5 and the decoder's RGB logits rescaled to std 0.5
# (they had drifted to ~60: tanh saturated), a penalty on |mask logit| > 4 and a mouth-box L1. The decoder's
# own L1 fell from 0.57 to 0.08 and the mean mask settled near 0.85; its warm-up snapshot is the shipped
# model (weights/README.md). On a CPU the same recipe (k_max 4, 3,951 steps, 109 min) only tied the first model.
# The next burst (prepared in session 6, not run yet): D sat at chance (d ≈ 2.0) through both adversarial
# phases; on a CPU, in 200 steps, the per-location hinge gave D 7× the margin of the global one, both tiny
# (docs/RESULTS.md, "The discriminator"). So first a one-minute check at a GPU's batch, with and without it:
#   PYTHONPATH=src python3 scripts/d_probe.py --device cuda --batch 48 --steps 400 [--patch]
# then the burst with both options, in one device call (the probes take up to 3 min; the main run shrinks).
# The adversarial phase starts at 20% of the time, not 60%: the weights are warmed up already, and in a CPU
# run (session 7) D's per-location margin took 1,200 steps to reach ~0.03 (docs/RESULTS.md); the warm-up
# snapshot is still exported (a later --adv-start-frac overrides the one below). Session 8 added --fixed-box:
# the sources seen through the target's crop box, as the renderer sees the head move in one box; most of the
# perceptual distance lies outside the face (docs/RESULTS.md, "Where the error lies"). It needs the cache
# prepared since then (its npz files hold `boxes`); on a CPU, 1,161 steps with it neither helped nor hurt, and
# the warm-up snapshot (before the adversarial phase) shows it on its own:
#   PROBE_STEPS=400 SMOKE=0 MINUTES=5 BUDGET=450 EXTRA='--init weights/neural.safetensors --fixed-box true \
#       --d-patch true --d-pretrain 300 --adv-start-frac 0.2' bash scripts/gpu_train.sh
# Session 9 ran it (no probes, MINUTES=8.2 BUDGET=555, --adv-start-frac 0.5) and then 2.9 more content-only
# minutes from its warm-up snapshot (the `--init` file must travel inside the tree: the tree and the carried
# cache together must stay under 64 MiB, so it replaced weights/neural.safetensors for that call; its first
# try, on the warm machine, resumed the burst's checkpoint and stopped at once: the script now clears it).
# That is the third model; the adversarial end was worse again (docs/RESULTS.md). E's output has been dead
# since the first burst (docs/RESULTS.md, "The embedder"): a next burst should add --revive-embedder true.
# Session 10 ran that beside a plain continuation (EXTRA2), then 2.3 minutes at --lr-g 5e-5: none of the three
# beat the third model on new people (docs/RESULTS.md, "Session 10"); more of the same steps won't either.
# The next burst (prepared in sessions 11 and 13, not run yet): two options side by side, each a change of what
# G is taught rather than more of the same steps. --closed-sources 0.5 (shut sources, open target: G draws the
# mouth's inside; on a CPU it opened the mouth further) and --w-warped 10 (the warped source alone against the
# target outside the face, at four scales: perfect motion there would gain 13-21% in perceptual distance, and
# the flow net trained alone on a CPU fitted its pairs but the rest of G was not trained with it; docs/RESULTS.md,
# "Where the error lies"). Choose on `wide` + training clips (never the evaluation set), as in session 10:
#   PROBE_STEPS=0 SMOKE=0 MINUTES=8.3 BUDGET=560 EXTRA='--init weights/neural.safetensors --fixed-box true \
#       --adv-start-frac 1.5' EXTRA1='--w-warped 10' EXTRA2='--closed-sources 0.5' bash scripts/gpu_train.sh
# Session 16 ran that (EXTRA1: the main run's own flags, so both runs are variants): --w-warped was worse on
# every measure; --closed-sources was better on every content measure and worse on identity, and the mean of
# it and its starting point (scripts/average_weights.py) is the fourth model (docs/RESULTS.md, "Session 16").
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
OUT=${OUT:-runs/gpu_out}
MINUTES=${MINUTES:-6.5}
BUDGET=${BUDGET:-505}
BATCH=${BATCH:-48}
CACHE=${CACHE:-cache/train}
MOBILENET=${MOBILENET:-.gpu/mobilenet_v2.safetensors}
mkdir -p "$OUT" runs
rm -rf runs/gpu runs/gpu2  # a warm machine keeps ignored outputs between calls: never resume an earlier run
T0=$(date +%s)

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
echo "cache: $(ls "$CACHE"/*.npz | wc -l) clips, $(du -sh "$CACHE" | cut -f1)"

# EXTRA: more train flags for both runs, e.g. a CPU rehearsal of this script:
#   DEVICE=cpu BATCH=2 MINUTES=0.3 EXTRA='--size 64 --max-clips 2 --model {"emb_dim":32}' bash scripts/gpu_train.sh
# shellcheck disable=SC2206
COMMON=(--device "${DEVICE:-cuda}" --batch "$BATCH" --mobilenet "$MOBILENET" --log-every 10 ${EXTRA:-})

# PROBE_STEPS > 0: before training, D alone against the shipped G (scripts/d_probe.py), with the global and
# the per-location hinge, each capped at 90 s; the log tells whether D can learn at this batch size
if [ "${PROBE_STEPS:-0}" -gt 0 ]; then
    for hinge in "" --patch; do
        echo "== D probe ${hinge:-(global hinge)}, $PROBE_STEPS steps"
        timeout 90 python3 scripts/d_probe.py --cache "$CACHE" --device "${DEVICE:-cuda}" --batch "$BATCH" \
            --steps "$PROBE_STEPS" $hinge 2>&1 | awk 'NR % 5 == 1 {print "probe " $0}' | tail -n 12
    done
fi

if [ "${SMOKE:-1}" = 1 ]; then
    echo "== smoke (30 s, 4 clips)"
    rm -rf runs/smoke
    timeout 150 python3 -m animate_portrait.training.train "$CACHE" --out runs/smoke --max-clips 4 \
        --minutes 0.5 --steps 100000 --adv-start 20 --sample-every 100000 "${COMMON[@]}" 2>&1 | tail -n 8
    if [ ! -f runs/smoke/weights/neural.safetensors ]; then
        echo "smoke run failed"; exit 1
    fi
python3 - <<'EOF'
import json
rows = [json.loads(l) for l in open("runs/smoke/log.jsonl")]
late = [r for r in rows if r["step"] >= 20]
if len(late) > 1:
    rate = (late[-1]["step"] - late[0]["step"]) / max(late[-1]["time_s"] - late[0]["time_s"], 1e-3)
    print(f"smoke: {rows[-1]['step']} steps, {rate:.2f} steps/s after warm-up; last {rows[-1]}")
EOF
fi
# the whole script must end inside BUDGET seconds (the device call's limit, less a margin): shrink the
# main run if the smoke took long; 60 s are kept for loading the data and exporting
LEFT=$(( BUDGET - ( $(date +%s) - T0 ) - 60 ))
MINUTES=$(python3 -c "print(round(max(min($MINUTES, $LEFT / 60), 0.5), 2))")

# EXTRA2 (optional): a second run side by side on the same GPU, with EXTRA2's flags after EXTRA's, into
# runs/gpu2: a control and a variant from one device call (only the final weights of each come back);
# the two share the 16 CPU cores
if [ -n "${EXTRA2:-}" ]; then
    export OMP_NUM_THREADS=8
    # shellcheck disable=SC2206
    SECOND=(${EXTRA2})
    echo "== second run beside the main one: ${EXTRA2}"
    timeout $(( LEFT + 45 )) python3 -m animate_portrait.training.train "$CACHE" \
        --out runs/gpu2 --minutes "$MINUTES" --steps 10000000 --adv-start-frac 0.6 --sample-every 100000000 \
        --ckpt-minutes 2 "${COMMON[@]}" "${SECOND[@]}" > runs/gpu2.log 2>&1 &
    PID2=$!
fi
echo "== main ($MINUTES min)"
# EXTRA1 (optional): flags for the main run only, after EXTRA's, so that both runs can be variants
# shellcheck disable=SC2086
timeout $(( LEFT + 45 )) python3 -m animate_portrait.training.train "$CACHE" --out runs/gpu \
    --minutes "$MINUTES" --steps 10000000 --adv-start-frac 0.6 --sample-every 200 --ckpt-minutes 2 "${COMMON[@]}" \
    ${EXTRA1:-}
RC=$?
echo "main exit $RC after $(( $(date +%s) - T0 )) s"
if [ -n "${EXTRA2:-}" ]; then
    wait "$PID2"; RC2=$?
    grep -v '^{"step"' runs/gpu2.log | tail -n 5
    echo "second exit $RC2 after $(( $(date +%s) - T0 )) s"
    RC=$(( RC > RC2 ? RC : RC2 ))
fi

# $OUT takes files of at most 16 MiB, and E+G+D in fp16 are ~19 MB: split each weights file in two parts
# (rejoin here with `cat neural.part00 neural.part01 > neural.safetensors`; the card's sha256 checks it).
# 8 files: 2 cards + 4 parts + log + the last sample grid.
# With EXTRA2 the second run's final weights, card and log take the warm-up snapshot's and the grid's places.
for name in neural neural_warmup; do
    if [ -f "runs/gpu/weights/$name.safetensors" ] && { [ $name = neural ] || [ -z "${EXTRA2:-}" ]; }; then
        split -b 15000000 -d "runs/gpu/weights/$name.safetensors" "$OUT/$name.part"
        cp "runs/gpu/weights/$name.json" "$OUT"/
    fi
done
cp runs/gpu/log.jsonl "$OUT"/ 2>/dev/null
if [ -n "${EXTRA2:-}" ]; then
    if [ -f runs/gpu2/weights/neural.safetensors ]; then
        split -b 15000000 -d runs/gpu2/weights/neural.safetensors "$OUT/second.part"
        cp runs/gpu2/weights/neural.json "$OUT/second.json"
    fi
    cp runs/gpu2/log.jsonl "$OUT/second_log.jsonl" 2>/dev/null
else
    for f in $(ls runs/gpu/samples/*.png 2>/dev/null | tail -n 1); do cp "$f" "$OUT"/; done
fi
ls -la "$OUT"
exit $RC
