#!/usr/bin/env bash
# The main job, on a fresh machine: install, train the quick CPU recipe on the
# full Tiny ImageNet (200 classes, 100k train images) within its time budget,
# evaluate on the 10k val images, and predict a few val images.
#
#   bash scripts/main_job.sh              # run dir: runs/main
#   RUN_DIR=runs/other bash scripts/main_job.sh
#
# Data: $SWINLAB_DATA (the zip, or a folder holding it), else
# ../shared/data/tiny-imagenet-200.zip (relative to the repository root), else the
# official archive, downloaded into $SWINLAB_CACHE (default ~/.cache/swinlab).
set -euo pipefail
cd "$(dirname "$0")/.."

# torch first and pinned: nothing may pull a newer (CUDA) build.
python3 -m pip install -q "torch==2.13.0"
python3 -m pip install -q -e .

RUN_DIR="${RUN_DIR:-runs/main}"
if [[ -n "${SWINLAB_DATA:-}" && -d "${SWINLAB_DATA}" ]]; then
  DATA_ZIP="${SWINLAB_DATA%/}/tiny-imagenet-200.zip"
else
  DATA_ZIP="${SWINLAB_DATA:-../shared/data/tiny-imagenet-200.zip}"
fi
if [[ ! -f "$DATA_ZIP" ]]; then
  # Neither $SWINLAB_DATA nor ../shared: fetch the official archive into the cache
  # ($SWINLAB_CACHE or ~/.cache/swinlab), written atomically and MD5-checked.
  echo "main_job.sh: Tiny ImageNet zip not found at $DATA_ZIP; downloading the official archive" >&2
  DATA_ZIP=$(python3 -c "
from swinlab.data.download import download_file
from swinlab.data.paths import cache_dir
from swinlab.data.tiny_imagenet import TINY_IMAGENET_MD5, TINY_IMAGENET_URL
print(download_file(TINY_IMAGENET_URL, cache_dir() / 'tiny-imagenet-200.zip', TINY_IMAGENET_MD5, progress=True))")
fi

start=$(date +%s)
echo "== train ($(date -u +%H:%M:%S))"
python3 -m swinlab train --config configs/quick_cpu_tiny_imagenet.json --data-root "$(realpath "$DATA_ZIP")" \
  --out "$RUN_DIR" --overwrite
echo "== evaluate ($(date -u +%H:%M:%S))"
python3 -m swinlab evaluate "$RUN_DIR"
echo "== predict ($(date -u +%H:%M:%S))"
python3 -m swinlab predict "$RUN_DIR" \
  "$DATA_ZIP::tiny-imagenet-200/val/images/val_0.JPEG" \
  "$DATA_ZIP::tiny-imagenet-200/val/images/val_1.JPEG" \
  "$DATA_ZIP::tiny-imagenet-200/val/images/val_2.JPEG" \
  "$DATA_ZIP::tiny-imagenet-200/val/images/val_3.JPEG" \
  "$DATA_ZIP::tiny-imagenet-200/val/images/val_4.JPEG"
echo "== done in $(( $(date +%s) - start ))s; outputs in $RUN_DIR"
