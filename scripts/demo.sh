#!/usr/bin/env bash
# The README's main job (`make demo`): train the `small` preset (MLA, DeepSeekMoE with shared +
# routed experts, MTP depth 1) on a text corpus, then print a generated sample and the path of
# the loss plot. A few minutes on 2 cores.
#
#   DATA="path ..."   text files/directories to train on (default: the Python standard
#                     library sources of this machine, /usr/lib/python3.*/*.py, capped at
#                     CAP_BYTES, so every Debian machine with python3 has a corpus)
#   CAP_BYTES=N       corpus cap for the default corpus (default 3000000)
#   STEPS=N           optimizer steps (default: configs/small.json's training.steps)
#   RECIPE=fp32|bf16|fp8  precision recipe (default fp8: the DeepSeek-V3 FP8 recipe)
#   RUN=DIR           run directory (default runs/demo; an old demo run there is replaced)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/tinyseek}
RUN=${RUN:-runs/demo}
CAP_BYTES=${CAP_BYTES:-3000000}

inputs=()
if [ -n "${DATA:-}" ]; then
  read -r -a inputs <<<"$DATA"
else
  total=0
  for f in /usr/lib/python3.*/*.py; do
    [ -f "$f" ] || continue
    size=$(stat -c %s "$f")
    if [ $((total + size)) -le "$CAP_BYTES" ]; then
      inputs+=("$f")
      total=$((total + size))
    fi
  done
  if [ ${#inputs[@]} -eq 0 ]; then
    echo "demo: no Python sources found under /usr/lib/python3.*; pass DATA=\"your text files\"" >&2
    exit 1
  fi
  echo "demo corpus: ${#inputs[@]} Python standard library files, $total bytes"
fi

# Replace a previous demo run (only a directory that looks like a tinyseek run).
if [ -e "$RUN" ]; then
  if [ -e "$RUN/metrics.jsonl" ] || [ -L "$RUN/checkpoint" ]; then
    rm -rf "$RUN"
  else
    echo "demo: $RUN exists and is not a tinyseek run; set RUN=another/dir" >&2
    exit 1
  fi
fi

args=(train --config configs/small.json --data "${inputs[@]}" --out "$RUN")
[ -n "${STEPS:-}" ] && args+=(--steps "$STEPS")
args+=(--recipe "${RECIPE:-fp8}")
"$BIN" "${args[@]}"

echo
echo "== validation =="
"$BIN" eval --checkpoint "$RUN" --batches 16
echo
echo "== sample (temperature 0.8; MTP speculative decoding over the latent KV cache) =="
prompt=${PROMPT:-"def "}
"$BIN" generate --checkpoint "$RUN" --prompt "$prompt" --max-new-tokens 160 --temperature 0.8 --seed 1 --speculative
echo
echo "loss plot: $RUN/loss.svg"
echo "metrics:   $RUN/metrics.jsonl   checkpoint: $RUN (resume with: $BIN train --resume $RUN --steps N)"
