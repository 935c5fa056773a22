#!/usr/bin/env bash
# Installs everything tinyseek's build, tests and benchmarks need, from Debian packages
# only. Idempotent: packages already present are skipped, so re-running is cheap.
set -euo pipefail

PACKAGES=(
  g++ cmake make pkg-config           # build
  libomp-dev                           # OpenMP runtime headers (GCC's libgomp ships with g++)
  nlohmann-json3-dev libcli11-dev      # JSON, command line
  libgtest-dev libgmock-dev            # tests
  python3 python3-torch python3-numpy  # PyTorch reference tests and baseline
  python3-regex                        # tokenizer tests: pre-tokenizer regexes (Oniguruma semantics)
  libbenchmark-dev libdnnl-dev libopenblas-dev   # benchmark peers
  openmpi-bin libopenmpi-dev           # distributed training and its tests
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
