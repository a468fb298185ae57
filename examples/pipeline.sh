#!/usr/bin/env bash
# Many portraits, one driver, in a shell pipeline: the driver is analysed once into a motion file,
# then every portrait in a folder is animated; one JSON line per portrait lands in results.jsonl.
#   bash examples/pipeline.sh PORTRAIT_DIR DRIVER.mp4 OUT_DIR
set -euo pipefail
portraits=$1 driver=$2 out=$3
mkdir -p "$out"
animate-portrait motion "$driver" -o "$out/driver.motion.npz" --overwrite
find "$portraits" -maxdepth 1 -type f \( -iname '*.jpg' -o -iname '*.png' \) |
  animate-portrait batch - --driver "$out/driver.motion.npz" --output-dir "$out" --json > "$out/results.jsonl" ||
  echo "some portraits failed: see $out/results.jsonl" >&2
