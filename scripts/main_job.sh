#!/usr/bin/env bash
# The main job, on a fresh machine: install swinlab with everything the tests need (so the
# README's second command, the tests, runs next), train the main job's recipe on the full
# Tiny ImageNet (200 classes, 100k train images) within its time budget, evaluate on the 10k
# val images, print a few of them with their predicted and true classes and the most-confused
# class pairs, and write the run report RUN_DIR/report.html; the whole job, install included,
# takes at most MAIN_JOB_MIN (default 15) minutes. Its output reads well in a file too
# (bash scripts/main_job.sh > job.log 2>&1: no progress bars there, a line every 30 s).
#
#   bash scripts/main_job.sh              # run folder: runs/main
#   RUN_DIR=runs/other bash scripts/main_job.sh
#
# Data: $SWINLAB_DATA (the zip, or a folder holding it), else
# ../shared/data/tiny-imagenet-200.zip (relative to the repository root), else the official
# archive, downloaded into $SWINLAB_CACHE (default ~/.cache/swinlab).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

# torch first and pinned: the local CPU wheel; nothing may pull a newer (CUDA) build. Quiet: no
# progress, and no "running pip as root" warning (a log of the job shows what matters).
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
python3 -m pip install -q "torch==2.13.0"
python3 -m pip install -q -e ".[test]"

RUN_DIR="${RUN_DIR:-runs/main}"
if [[ -n "${SWINLAB_DATA:-}" && -d "${SWINLAB_DATA}" ]]; then
  DATA_ZIP="${SWINLAB_DATA%/}/tiny-imagenet-200.zip"
else
  DATA_ZIP="${SWINLAB_DATA:-../shared/data/tiny-imagenet-200.zip}"
fi
if [[ ! -f "$DATA_ZIP" ]]; then
  echo "main_job.sh: Tiny ImageNet zip not found at $DATA_ZIP; downloading the official archive" >&2
  DATA_ZIP=$(python3 -c "
from swinlab.data.tiny_imagenet import TINY_IMAGENET_MD5, TINY_IMAGENET_URL
from swinlab.io.download import cache_dir, download_file
print(download_file(TINY_IMAGENET_URL, cache_dir() / 'tiny-imagenet-200.zip', md5=TINY_IMAGENET_MD5, progress=True))")
fi

# The whole job fits in MAIN_JOB_MIN minutes (default 15) of wall clock: training gets what the
# install left, less EVAL_RESERVE_S for the final evaluation (the budget counts data caching).
TOTAL_S=$(( ${MAIN_JOB_MIN:-15} * 60 ))
TRAIN_S=$(( TOTAL_S - ( $(date +%s) - start ) - ${EVAL_RESERVE_S:-75} ))
if (( TRAIN_S < 120 )); then TRAIN_S=120; fi
echo "== install done in $(( $(date +%s) - start ))s; train for ${TRAIN_S}s ($(date -u +%H:%M:%S))"
# (--no-report: the evaluation below writes RUN_DIR/report.html; the page of train would evaluate once more)
python3 -m swinlab train --config quick_cpu_tiny_imagenet --data-root "$(realpath "$DATA_ZIP")" \
  --out "$RUN_DIR" --overwrite --no-report --time-budget-min "$(python3 -c "print(round($TRAIN_S / 60, 2))")"
echo "== evaluate on the 10,000 val images, write the run report ($(date -u +%H:%M:%S))"
python3 -m swinlab evaluate "$RUN_DIR" --tta-hflip --show 8 --no-progress
echo "== done in $(( $(date +%s) - start ))s; outputs in $RUN_DIR (open $RUN_DIR/report.html)"
