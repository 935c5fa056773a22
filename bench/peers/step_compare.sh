#!/usr/bin/env bash
# Side-by-side training-step throughput: tinyseek's fp32, bf16 and fp8 recipes
# (`tinyseek bench step --recipes fp32,bf16,fp8`: each recipe in its own process, so peak RSS
# is its own) against the PyTorch reference model (bench/peers/torch_step.py, FP32 and BF16
# autocast), same config, batch and sequence, 2 threads, alternating rounds so that a shared
# machine's load hits every contender alike. Prints a Markdown summary for bench/RESULTS.md:
# medians over rounds, and ratios of medians with the per-round range (each round's ratio
# compares runs made minutes apart).
#
#   BUILD=build bench/peers/step_compare.sh [CONFIG] [ROUNDS]
#   env: BATCH (8), SEQ (256), STEPS (3), THREADS (2), RECIPES (fp32,bf16,fp8),
#        RECOMPUTE (none; or selective, full, all: every policy for every recipe)
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
RECIPES="${RECIPES:-fp32,bf16,fp8}" RECOMPUTE="${RECOMPUTE:-none}"
PY=/usr/bin/python3
[[ -x "$BIN" ]] || { echo "error: $BIN not found; build it first (cmake --build $BUILD --target tinyseek)" >&2; exit 1; }
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

echo "config $CONFIG, B $BATCH x T $SEQ, $STEPS timed steps, $THREADS threads, $ROUNDS rounds, recipes $RECIPES," \
     "recompute $RECOMPUTE" >&2
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round: tinyseek ($RECIPES)" >&2
  OMP_NUM_THREADS=$THREADS "$BIN" bench step --config "$CONFIG" --batch "$BATCH" --seq "$SEQ" --steps "$STEPS" \
    --recipes "$RECIPES" --recompute "$RECOMPUTE" --json > "$OUT/tinyseek.$round.json"
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
med = statistics.median
ts = [json.load(open(f"{out}/tinyseek.{r}.json")) for r in range(1, rounds + 1)]
torch = {p: [json.load(open(f"{out}/torch_{p}.{r}.json")) for r in range(1, rounds + 1)] for p in ("fp32", "bf16")}
# Each tinyseek round holds one run per (recipe, policy); its rounds_tokens_per_s has one
# entry (the child ran once per round), so per-round values come from the round files.
def runs(r):
    return {(x["recipe"], x["recompute"]): x for x in r["runs"]}
cells = list(runs(ts[0]).keys())
per = {c: [runs(r)[c] for r in ts] for c in cells}
t0 = ts[0]
print(f"Config `{config.split('/')[-1]}`: {t0['params_active']:,} active / {t0['params_total']:,} total parameters, "
      f"B {t0['batch']} x T {t0['seq']}, {t0['threads']} threads, {t0['model_gflop_per_step']} GFLOP per step, "
      f"{rounds} rounds; tinyseek timed: zero_grad + forward_backward + AdamW (fp8: BF16 moments, as `train "
      f"--recipe fp8`); PyTorch {torch['fp32'][0]['torch']}: zero_grad + forward + backward + AdamW.\n")
print("| contender | tokens/s (median) | ms/step | CPU ms/step | MFU (peak) | peak RSS MiB | saved activations MiB |")
print("|---|---|---|---|---|---|---|")
for c in cells:
    rs = per[c]
    print(f"| tinyseek {c[0]}, recompute {c[1]} | {med(x['tokens_per_s'] for x in rs):.0f} | "
          f"{med(x['ms_per_step'] for x in rs):.0f} | {med(x['cpu_ms_per_step'] for x in rs):.0f} | "
          f"{100 * med(x['mfu'] for x in rs):.1f}% ({rs[0]['peak_kind']}) | {med(x['peak_rss_mb'] for x in rs):.0f} | "
          f"{med(x['saved_activation_mb'] for x in rs):.1f} |")
for p, label in (("fp32", "PyTorch fp32"), ("bf16", "PyTorch bf16 autocast")):
    rs = torch[p]
    print(f"| {label} | {med(r['tokens_per_s'] for r in rs):.0f} | {med(r['ms_per_step'] for r in rs):.0f} | - | - | "
          f"{med(r['peak_rss_mb'] for r in rs):.0f} | - |")
print()

def ratio_line(label, num, den, target=None):
    per_round = [a / b for a, b in zip(num, den)]
    ratio = med(num) / med(den)
    t = f"; target >= {target}" if target else ""
    print(f"- {label}: **{ratio:.2f}x** (per round {min(per_round):.2f}-{max(per_round):.2f}{t})")

tok = lambda c: [x["tokens_per_s"] for x in per[c]]
torch_tok = {p: [r["tokens_per_s"] for r in torch[p]] for p in torch}
targets = {("fp8", "fp32"): 1.6, ("fp8", "bf16"): 1.0}
torch_targets = {("fp8", "fp32"): 3, ("fp8", "bf16"): 1.5, ("fp32", "fp32"): 2}
for policy in dict.fromkeys(c[1] for c in cells):
    recipes = [c[0] for c in cells if c[1] == policy]
    for i, a in enumerate(recipes):
        for b in recipes[:i]:
            ratio_line(f"tinyseek {a} / tinyseek {b} (recompute {policy})", tok((a, policy)), tok((b, policy)),
                       targets.get((a, b)))
    for a in recipes:
        for p in ("fp32", "bf16"):
            ratio_line(f"tinyseek {a} (recompute {policy}) / PyTorch {p}{' autocast' if p == 'bf16' else ''}",
                       tok((a, policy)), torch_tok[p], torch_targets.get((a, p)))
print(f"- losses after the timed steps (same init distribution, different draws): "
      + ", ".join(f"tinyseek {c[0]} {per[c][0]['loss_last']}" for c in cells if c[1] == cells[0][1])
      + f", PyTorch fp32 {torch['fp32'][0]['loss_last']:.4g}, bf16 {torch['bf16'][0]['loss_last']:.4g}")
EOF
