#!/usr/bin/env bash
# Side-by-side training-step throughput: `tinyseek bench step` (FP32, each recompute policy in
# its own process) against the PyTorch reference model (bench/peers/torch_step.py, FP32 and
# BF16 autocast), same config, batch and sequence, 2 threads, alternating rounds so that a
# shared machine's load hits every contender alike. Prints a Markdown summary (medians over
# rounds, ratio of medians with the per-round range) for bench/RESULTS.md.
#
#   BUILD=build bench/peers/step_compare.sh [CONFIG] [ROUNDS]
#   env: BATCH (8), SEQ (256), STEPS (3), THREADS (2)
# CONFIG defaults to configs/base.json, or bench/peers/base.json while the preset is missing.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD="${BUILD:-build}"
BIN="${BIN:-$ROOT/$BUILD/tinyseek}"
CONFIG="${1:-}"
if [[ -z "$CONFIG" ]]; then
  CONFIG="$ROOT/configs/base.json"
  [[ -f "$CONFIG" ]] || CONFIG="$ROOT/bench/peers/base.json"
fi
ROUNDS="${2:-2}"
BATCH="${BATCH:-8}" SEQ="${SEQ:-256}" STEPS="${STEPS:-3}" THREADS="${THREADS:-2}"
PY=/usr/bin/python3
[[ -x "$BIN" ]] || { echo "error: $BIN not found; build it first (cmake --build $BUILD --target tinyseek)" >&2; exit 1; }
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

echo "config $CONFIG, B $BATCH x T $SEQ, $STEPS timed steps, $THREADS threads, $ROUNDS rounds" >&2
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round: tinyseek (none, selective, full)" >&2
  OMP_NUM_THREADS=$THREADS "$BIN" bench step --config "$CONFIG" --batch "$BATCH" --seq "$SEQ" --steps "$STEPS" \
    --recompute all --json > "$OUT/tinyseek.$round.json"
  for prec in fp32 bf16; do
    echo "round $round: pytorch $prec" >&2
    # PyTorch at its tuned settings (../shared/reference/machine.md): OpenBLAS not forced to
    # the Haswell kernels, passive OpenMP waiting.
    env -u OPENBLAS_CORETYPE OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=$THREADS \
      "$PY" "$ROOT/bench/peers/torch_step.py" --config "$CONFIG" --precision $prec --batch "$BATCH" --seq "$SEQ" \
      --steps "$STEPS" --threads "$THREADS" --json > "$OUT/torch_$prec.$round.json"
  done
done

"$PY" - "$OUT" "$ROUNDS" "$CONFIG" <<'EOF'
import json, statistics, sys
out, rounds, config = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ts = [json.load(open(f"{out}/tinyseek.{r}.json")) for r in range(1, rounds + 1)]
tf = [json.load(open(f"{out}/torch_fp32.{r}.json")) for r in range(1, rounds + 1)]
tb = [json.load(open(f"{out}/torch_bf16.{r}.json")) for r in range(1, rounds + 1)]
med = statistics.median
def pol(r, name):
    return next(p for p in r["policies"] if p["recompute"] == name)
t0 = ts[0]
print(f"Config `{config.split('/')[-1]}`: {t0['params_active']:,} active / {t0['params_total']:,} total parameters, "
      f"B {t0['batch']} x T {t0['seq']}, {t0['threads']} threads, {t0['model_gflop_per_step']} GFLOP per step; "
      f"tinyseek timed: {t0['timed']}; PyTorch {tf[0]['torch']}: zero_grad + forward + backward + AdamW.\n")
print("| contender | tokens/s (median) | ms/step | peak RSS MiB | saved activations MiB | MFU |")
print("|---|---|---|---|---|---|")
for name in ["none", "selective", "full"]:
    tok = med(pol(r, name)["tokens_per_s"] for r in ts)
    print(f"| tinyseek fp32, recompute {name} | {tok:.0f} | {med(pol(r, name)['ms_per_step'] for r in ts):.0f} | "
          f"{med(pol(r, name)['peak_rss_mb'] for r in ts):.0f} | {med(pol(r, name)['saved_activation_mb'] for r in ts):.1f} | "
          f"{100 * med(pol(r, name)['mfu'] for r in ts):.1f}% |")
for label, rs in [("PyTorch fp32", tf), ("PyTorch bf16 autocast", tb)]:
    print(f"| {label} | {med(r['tokens_per_s'] for r in rs):.0f} | {med(r['ms_per_step'] for r in rs):.0f} | "
          f"{med(r['peak_rss_mb'] for r in rs):.0f} | - | - |")
print()
for name in ["none", "selective", "full"]:
    per_round = [pol(a, name)["tokens_per_s"] / b["tokens_per_s"] for a, b in zip(ts, tf)]
    ratio = med(pol(r, name)["tokens_per_s"] for r in ts) / med(r["tokens_per_s"] for r in tf)
    print(f"- tinyseek fp32 ({name}) / PyTorch fp32: **{ratio:.2f}x** (per round {min(per_round):.2f}-{max(per_round):.2f}); "
          f"target >= 2")
per_round = [pol(a, "none")["tokens_per_s"] / b["tokens_per_s"] for a, b in zip(ts, tb)]
print(f"- tinyseek fp32 (none) / PyTorch bf16 autocast: {med(pol(r, 'none')['tokens_per_s'] for r in ts) / med(r['tokens_per_s'] for r in tb):.2f}x "
      f"(per round {min(per_round):.2f}-{max(per_round):.2f})")
print(f"- losses after the timed steps (same init distribution, different draws): tinyseek {t0['loss_last']}, "
      f"PyTorch fp32 {tf[0]['loss_last']:.4g}")
EOF
