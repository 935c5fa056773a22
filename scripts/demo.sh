#!/usr/bin/env bash
# The README's main job. Today (issue #2 landed) tinyseek has its numerics foundation but
# no trainer yet: this shows the FP8 code tables and DeepSeek-V3's accumulation finding.
# When the trainer lands (issues #5/#6) this becomes: train `small` with the FP8 recipe and
# MTP on a text corpus, print a sample and the path of the loss plot.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/tinyseek
echo "== E4M3 code table (OCP FP8) =="
$BIN numerics codes --format e4m3
echo
echo "== Limited tensor-core accumulation vs FP32 promotion (DeepSeek-V3 §3.3.2) =="
$BIN numerics accumulation --k 4096
echo
echo "Training (tinyseek train) is not built yet; see the open issues (#5, #6)."
