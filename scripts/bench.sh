#!/usr/bin/env bash
# `make bench`: every benchmark that exists so far. Results go to bench/RESULTS.md by hand,
# with the command and the numbers seen (the machines are shared: quote medians, same run).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/tinyseek
$BIN numerics accumulation --k 4096 --trials 4096
# GEMM engine vs oneDNN / OpenBLAS, interleaved, 2 threads (builds the peers in build/).
bench/gemm.sh
