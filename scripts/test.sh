#!/usr/bin/env bash
# Sets up (scripts/setup.sh), builds, and runs every test: ctest runs the
# GoogleTest units, the runtime isolation check and the lit suite. Exits
# non-zero on any failure.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${MOEC_BUILD_DIR:-$root/build}

bash "$root/scripts/setup.sh"
cmake --build "$build_dir"
ctest --test-dir "$build_dir" --output-on-failure -j "$(nproc)"
