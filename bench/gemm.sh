#!/usr/bin/env bash
# tinyseek's GEMMs side by side with oneDNN and OpenBLAS on the same machine, same threads,
# same shapes, in one script (issue #3). Builds tinyseek and bench/peers/gemm_peers, then
# alternates `tinyseek bench gemm --json` and `gemm_peers` ROUNDS times (interleaved, so
# load from other processes hits both alike), takes the median GFLOP/s of each row over
# the rounds and prints the ratios the issue targets:
#   fp8-tile128 / onednn-bf16 >= 0.9    bf16 / onednn-bf16 >= 0.95    fp32 / openblas-f32 >= 0.95
#
# On a loaded machine 2-thread wall clock is meaningless; bench/peers/gemm_prepacked (built
# here too) compares one shape interleaved call by call, with CPUTIME=1 on 1 thread.
#
# Usage: bench/gemm.sh [--shapes MxNxK,...]        (default: tinyseek's six default shapes)
# Environment: BUILD (build dir, default build), THREADS (default 2), ROUNDS (default 3),
#              REPEATS (timed runs per row per round, default 5), OUT (directory for the raw JSON).
#
# OpenBLAS: this machine's environment sets OPENBLAS_CORETYPE=Haswell, which makes OpenBLAS
# use its AVX2 kernels and halves its SGEMM on AVX-512 cores. The peers run with
# OPENBLAS_CORETYPE=Cooperlake (its AVX-512 kernels) instead; the script prints the core
# OpenBLAS reports so the choice is visible.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
REPEATS=${REPEATS:-5}
OUT=${OUT:-$BUILD/bench/gemm-$(date +%Y%m%d-%H%M%S)}
SHAPE_ARGS=()
if [[ $# -gt 0 ]]; then
  [[ $1 == --shapes && $# -eq 2 ]] || { echo "usage: bench/gemm.sh [--shapes MxNxK,...]" >&2; exit 2; }
  SHAPE_ARGS=(--shapes "$2")
fi

echo "== building tinyseek and the GEMM peers in $BUILD ==" >&2
PEERS=1
if ! cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTINYSEEK_BUILD_BENCH_PEERS=ON >/dev/null; then
  echo "bench/gemm.sh: the peers need oneDNN and OpenBLAS (sudo apt-get install libdnnl-dev libopenblas-dev);" \
       "measuring tinyseek alone" >&2
  PEERS=0
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTINYSEEK_BUILD_BENCH_PEERS=OFF >/dev/null
fi
TARGETS=(tinyseek)
[[ $PEERS == 1 ]] && TARGETS+=(gemm_peers gemm_prepacked)
cmake --build "$BUILD" -j2 --target "${TARGETS[@]}" >/dev/null

mkdir -p "$OUT"
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS
for ((r = 1; r <= ROUNDS; r++)); do
  echo "== round $r/$ROUNDS: tinyseek bench gemm ==" >&2
  "$BUILD/tinyseek" bench gemm --json --repeats "$REPEATS" "${SHAPE_ARGS[@]}" >"$OUT/tinyseek.$r.json"
  if [[ $PEERS == 1 ]]; then
    echo "== round $r/$ROUNDS: gemm_peers (OPENBLAS_CORETYPE=Cooperlake) ==" >&2
    OPENBLAS_CORETYPE=Cooperlake "$BUILD/bench/gemm_peers" --repeats "$REPEATS" "${SHAPE_ARGS[@]}" >"$OUT/peers.$r.json"
  fi
done

echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs, OMP_NUM_THREADS=$THREADS," \
     "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "raw JSON: $OUT"
python3 bench/gemm_summary.py "$OUT" "$ROUNDS" "$PEERS"
