#!/usr/bin/env bash
# Installs everything moec needs on Debian 12 and configures the build.
#
#   bash scripts/setup.sh            # apt packages, Python venv, cmake configure
#
# Idempotent and quiet on a second run: apt runs only when a package is
# missing, pip only when scripts/requirements.txt changed, cmake configure
# only when there is no build tree yet (ninja re-runs cmake when needed).
#
# Environment:
#   MOEC_BUILD_DIR  build directory (default: build)
#   MOEC_VENV       Python virtual environment (default: .venv)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${MOEC_BUILD_DIR:-$root/build}
venv=${MOEC_VENV:-$root/.venv}

# LLVM/MLIR 22 from Debian (bookworm-security carries 22.1): the compiler,
# linker, TableGen, lit/FileCheck; the rest is what the build and tests use.
packages=(
  llvm-22-dev libmlir-22-dev mlir-22-tools llvm-22-tools clang-22 lld-22
  libclang-rt-22-dev
  cmake ninja-build ccache
  libgtest-dev
  python3 python3-venv
  liburing-dev libxxhash-dev
)

log() { printf 'moec setup: %s\n' "$*"; }

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { log "need root or sudo to install: ${missing[*]}"; exit 1; }
    sudo=(sudo)
  fi
  log "installing ${missing[*]}"
  # env inside sudo: sudo resets the environment of what it runs.
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python packages for tests (format oracles), in the project's own venv:
# Debian's system Python refuses pip installs outside one.
requirements=$root/scripts/requirements.txt
stamp=$venv/.moec-requirements.sha256
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [[ ! -x $venv/bin/python || ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  log "creating Python environment in $venv"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check \
    -r "$requirements"
  echo "$want" >"$stamp"
fi

# Configure unless a configuration completed (a failed first configure
# leaves a CMakeCache.txt but no build.ninja; configure again then).
if [[ ! -f $build_dir/build.ninja ]]; then
  log "configuring $build_dir"
  cmake -G Ninja -S "$root" -B "$build_dir" \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_COMPILER=/usr/bin/clang-22 \
    -DCMAKE_CXX_COMPILER=/usr/bin/clang++-22 \
    -DMLIR_DIR=/usr/lib/llvm-22/lib/cmake/mlir \
    -DLLVM_EXTERNAL_LIT=/usr/lib/llvm-22/bin/lit \
    -DMOEC_PYTHON="$venv/bin/python" >/dev/null
fi
