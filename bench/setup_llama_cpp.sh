#!/usr/bin/env bash
# bench/setup_llama_cpp.sh - the peer for the benchmarks: llama.cpp through
# PyPI's llama-cpp-python, built from source for this host's ISA.
#
#   bash bench/setup_llama_cpp.sh [--force] [--print-cmake-args]
#
# Builds llama.cpp's own code with -DGGML_NATIVE=OFF and every x86 ISA option
# this host has turned on explicitly (AVX2, FMA, F16C, BMI2; AVX-VNNI and
# AVX-512 F/VBMI/VNNI/BF16 where /proc/cpuinfo lists them), AMX off (some of
# these machines advertise AMX and die with SIGILL on it), so that the peer is
# seen at its best and never built for a CPU it is not on.
#
# An existing venv is reused only when llama.cpp's system-info line in it shows
# exactly the expected ISA: first $LLAMA_VENV, then each of
# $MOEC_BENCH_REUSE_VENVS (colon-separated; default /work/llama-venv, a venv
# left by an earlier session). Otherwise a fresh venv is built at $LLAMA_VENV.
# pip's wheel cache is bypassed: it keys wheels by version, not by CMAKE_ARGS,
# and would hand back a wheel built with other flags.
#
# Environment:
#   MOEC_BENCH_DIR             work directory (default /var/tmp/moec-bench)
#   LLAMA_VENV                 the venv to use or create ($MOEC_BENCH_DIR/llama-venv)
#   MOEC_BENCH_REUSE_VENVS     venvs to reuse when their ISA is right
#   LLAMA_CPP_PYTHON_VERSION   the PyPI version (default 0.3.36)
#   PYTHON                     the interpreter for a new venv (default python3)
#
# Progress goes to standard error; the last line on standard output is the
# venv's path (what bench/decode_prefill.py reads).
set -euo pipefail

BENCH_DIR=${MOEC_BENCH_DIR:-/var/tmp/moec-bench}
VENV=${LLAMA_VENV:-$BENCH_DIR/llama-venv}
REUSE=${MOEC_BENCH_REUSE_VENVS-/work/llama-venv}
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
PYTHON=${PYTHON:-python3}
FORCE=0
PRINT_ONLY=0

for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    --print-cmake-args) PRINT_ONLY=1 ;;
    -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup_llama_cpp.sh: unknown argument '$arg' (--force, --print-cmake-args)" >&2; exit 2 ;;
  esac
done

log() { echo "setup_llama_cpp: $*" >&2; }
die() { echo "setup_llama_cpp: error: $*" >&2; exit 1; }

[ "$(uname -m)" = x86_64 ] || die "only x86-64 hosts are handled (this is $(uname -m))"
[ -r /proc/cpuinfo ] || die "cannot read /proc/cpuinfo"

# The host's features: the first 'flags' line (all cores are alike here).
FLAGS=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
has() { [[ "$FLAGS" == *" $1 "* ]]; }

# CMake options and the system-info names they must produce.
CMAKE_ARGS_LIST=(-DGGML_NATIVE=OFF)
EXPECT=()
UNEXPECT=(AMX_INT8)
onoff() { # onoff CMAKE_OPTION SYSINFO_NAME FLAG...
  local opt=$1 name=$2; shift 2
  local f
  for f in "$@"; do
    if ! has "$f"; then
      CMAKE_ARGS_LIST+=("-D$opt=OFF")
      [ -n "$name" ] && UNEXPECT+=("$name")
      return 0
    fi
  done
  CMAKE_ARGS_LIST+=("-D$opt=ON")
  [ -n "$name" ] && EXPECT+=("$name")
  return 0
}
has avx2 || die "this host has no AVX2; the benchmark's peer build expects at least AVX2"
onoff GGML_SSE42 "" sse4_2
onoff GGML_AVX AVX avx
onoff GGML_AVX2 AVX2 avx2
onoff GGML_FMA FMA fma
onoff GGML_F16C F16C f16c
onoff GGML_BMI2 BMI2 bmi2
onoff GGML_AVX_VNNI AVX_VNNI avx_vnni
onoff GGML_AVX512 AVX512 avx512f avx512cd avx512vl avx512dq avx512bw
onoff GGML_AVX512_VBMI AVX512_VBMI avx512f avx512bw avx512_vbmi
onoff GGML_AVX512_VNNI AVX512_VNNI avx512f avx512bw avx512_vnni
onoff GGML_AVX512_BF16 AVX512_BF16 avx512f avx512bw avx512_bf16
CMAKE_ARGS_LIST+=(-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF)
CMAKE_ARGS_VALUE="${CMAKE_ARGS_LIST[*]}"

if [ "$PRINT_ONLY" = 1 ]; then
  echo "$CMAKE_ARGS_VALUE"
  exit 0
fi

# check_venv VENV: 0 when llama_cpp imports there and its system-info line
# shows every expected feature and none of the unexpected ones.
check_venv() {
  local v=$1 info name
  [ -x "$v/bin/python" ] || return 1
  info=$("$v/bin/python" -c 'import llama_cpp; print(llama_cpp.llama_print_system_info().decode())' 2>/dev/null) || return 1
  for name in "${EXPECT[@]}"; do
    [[ "$info" == *"$name = 1"* ]] || { log "$v: system info lacks '$name = 1': $info"; return 1; }
  done
  for name in "${UNEXPECT[@]}"; do
    [[ "$info" != *"$name = 1"* ]] || { log "$v: system info has '$name = 1', which this host lacks or the bench turns off: $info"; return 1; }
  done
  log "$v: system info: $info"
  return 0
}

log "host ISA: expecting ${EXPECT[*]} (and none of ${UNEXPECT[*]})"
if [ "$FORCE" = 0 ]; then
  if check_venv "$VENV"; then
    log "reusing $VENV"
    echo "$VENV"
    exit 0
  fi
  IFS=: read -r -a candidates <<< "$REUSE"
  for c in "${candidates[@]}"; do
    [ -n "$c" ] && [ "$c" != "$VENV" ] || continue
    if check_venv "$c"; then
      log "reusing $c (its ISA matches this host's)"
      echo "$c"
      exit 0
    fi
  done
fi

command -v "$PYTHON" >/dev/null || die "no '$PYTHON' (set PYTHON=)"
command -v cmake >/dev/null || log "no cmake on PATH: pip will fetch it from PyPI"
mkdir -p "$(dirname "$VENV")"
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV" || die "python -m venv failed (Debian: apt-get install python3-venv)"
fi
log "installing llama-cpp-python==$VERSION from source with CMAKE_ARGS=\"$CMAKE_ARGS_VALUE\""
log "(compiles llama.cpp: several minutes on 2 cores)"
"$VENV/bin/python" -m pip install --quiet --upgrade pip >&2 || die "pip upgrade failed"
"$VENV/bin/python" -m pip install --quiet numpy typing-extensions diskcache jinja2 >&2 \
  || die "installing llama-cpp-python's dependencies failed"
"$VENV/bin/python" -m pip uninstall --quiet --yes llama-cpp-python >&2 2>/dev/null || true
CMAKE_ARGS="$CMAKE_ARGS_VALUE" FORCE_CMAKE=1 CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
  "$VENV/bin/python" -m pip install --no-cache-dir --no-deps --force-reinstall \
    --no-binary llama-cpp-python "llama-cpp-python==$VERSION" >&2 \
  || die "building llama-cpp-python failed (see pip's output above)"
echo "$CMAKE_ARGS_VALUE" > "$VENV/moec-bench-cmake-args.txt"
check_venv "$VENV" || die "the build in $VENV does not show the expected ISA"
log "built $VENV"
echo "$VENV"
