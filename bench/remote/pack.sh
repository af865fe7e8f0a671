#!/usr/bin/env bash
# Packs the decode/prefill benchmark for a machine that has no toolchain
# (no LLVM, no clang, no network): the figures of decode_prefill.py on a
# host of another ISA, measured with what this machine builds.
#
#   bench/remote/pack.sh [--target T] [--work-dir DIR] [--build-dir DIR]
#                        [--llama-src DIR | --llama-bench FILE] PACK
#
# --llama-src: a llama.cpp tree to build llama-bench from (default: the
# release's source from PyPI); --llama-bench: one already built for T.
#
# PACK gets (about 36 MB):
#   moec.xz            this build's moec, linked against LLVM's and MLIR's
#                      static archives: synthesizes and bundles the model there
#   model-run          the benchmark model's code compiled here for T
#   membw, int8peak    the bound programs, built with T's -m flags
#   llama-bench.xz     llama.cpp's own benchmark, built from the same release
#                      as setup_llama_cpp.sh, static, with T's GGML ISA options
#   lib/               the shared libraries those link that a bare host may lack
#   vocab.gguf, prompt.txt, run.sh
# Then on the other machine: `bash PACK/run.sh` (bench/remote/run.sh).
#
# The code is compiled here from the benchmark GGUF (decode_prefill.py
# synthesizes it into the work directory); run.sh synthesizes the same
# model there (moec synth is deterministic) and writes its bundle with
# `moec bundle --target=T`, which the code compiled here reads.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TARGET=x86_64-avx512
WORK=${MOEC_BENCH_DIR:-/var/tmp/moec-bench}
LLAMA_SRC=
LLAMA_BENCH=
BUILD=$ROOT/build
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}

usage() { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
die() { echo "pack.sh: $*" >&2; exit 1; }
log() { echo "pack.sh: $*" >&2; }

PACK=
while [[ $# -gt 0 ]]; do
  case "$1" in
    --target) TARGET=$2; shift 2 ;;
    --work-dir) WORK=$2; shift 2 ;;
    --llama-src) LLAMA_SRC=$2; shift 2 ;;
    --llama-bench) LLAMA_BENCH=$2; shift 2 ;;
    --build-dir) BUILD=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    -*) die "unknown option $1" ;;
    *) PACK=$1; shift ;;
  esac
done
[[ -n "$PACK" ]] || usage 1
case "$TARGET" in
  x86_64-avx512)
    MFLAGS=(-mavx2 -mfma -mavx512f -mavx512bw -mavx512vnni)
    GGML=(-DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
          -DGGML_AVX_VNNI=ON -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON
          -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON) ;;
  x86_64-avx2)
    MFLAGS=(-mavx2 -mfma)
    GGML=(-DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON) ;;
  *) die "--target must be x86_64-avx512 or x86_64-avx2 (a host of the same triple as this one), got $TARGET" ;;
esac
MOEC=$BUILD/bin/moec
GGUF=$WORK/qwen3moe-bench.gguf
VOCAB=$ROOT/../shared/testdata/tokenizers/ggml-vocab-llama-spm.gguf
[[ -x "$MOEC" ]] || die "no $MOEC: build moec first (ninja -C build moec)"
[[ -f "$GGUF" ]] || die "no $GGUF: run bench/decode_prefill.py once (it synthesizes the model)"
[[ -f "$VOCAB" ]] || die "no $VOCAB"
mkdir -p "$PACK/lib"
PACK=$(cd "$PACK" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# moec, static: the link line of build/bin/moec with the LLVM and MLIR
# shared libraries replaced by their static archives (only what moec
# references is linked: ~120 MB stripped, ~23 MB as xz).
log "linking a static moec"
LLVM_LIB=/usr/lib/llvm-22/lib
LINK=$(ninja -C "$BUILD" -t commands bin/moec | tail -n 1)
LINK=${LINK#*&& }
LINK=${LINK%% && *}
STATIC="-Wl,--start-group $(echo $LLVM_LIB/libMLIR*.a $LLVM_LIB/libLLVM*.a) -Wl,--end-group"
LINK=$(echo "$LINK" | sed -E \
  -e "s# -o bin/moec # -o $TMP/moec #" \
  -e "s#[^ ]*libMLIR\.so[^ ]*#$STATIC#" \
  -e "s#[^ ]*libLLVM\.so[^ ]*##" \
  -e "s#[^ ]*libxxhash\.so#/usr/lib/x86_64-linux-gnu/libxxhash.a -lz /usr/lib/x86_64-linux-gnu/libzstd.so.1 -ldl -lpthread#")
(cd "$BUILD" && eval "$LINK") || die "static link of moec failed"
strip "$TMP/moec"
log "compressing moec (about 2 minutes)"
xz -T0 -9 -c "$TMP/moec" > "$PACK/moec.xz"

# The model's code for the target (the bundle written here is dropped: run.sh
# writes the same one there).
log "compiling the benchmark model for $TARGET"
"$MOEC" "$GGUF" --target="$TARGET" -o "$TMP/out" >&2
cp "$TMP/out/model-run" "$PACK/"
rm -rf "$TMP/out"

log "building membw and int8peak (${MFLAGS[*]})"
for n in membw int8peak; do
  clang-22 -O2 "${MFLAGS[@]}" -pthread -o "$PACK/$n" "$ROOT/bench/$n.c"
done

# llama-bench from the release setup_llama_cpp.sh installs.
build_llama_bench() {
  if [[ -z "$LLAMA_SRC" ]]; then
    local py=$WORK/llama-venv/bin/python
    [[ -x "$py" ]] || py=python3
    log "downloading llama-cpp-python==$VERSION's source"
    "$py" -m pip download --quiet --no-deps --no-binary :all: \
      "llama-cpp-python==$VERSION" -d "$TMP/dl" >&2 || die "download failed"
    tar -xzf "$TMP"/dl/llama_cpp_python-*.tar.gz -C "$TMP"
    LLAMA_SRC=$(echo "$TMP"/llama_cpp_python-*/vendor/llama.cpp)
  fi
  log "building llama-bench for $TARGET (10 to 20 minutes on 2 cores)"
  cmake -S "$LLAMA_SRC" -B "$TMP/llama-build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_NATIVE=OFF \
    -DGGML_SSE42=ON "${GGML[@]}" \
    -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF >"$TMP/cmake.log" 2>&1 \
    || { tail -20 "$TMP/cmake.log" >&2; die "configuring llama.cpp failed"; }
  ninja -C "$TMP/llama-build" llama-bench >"$TMP/ninja.log" 2>&1 \
    || { tail -20 "$TMP/ninja.log" >&2; die "building llama-bench failed"; }
  strip -o "$TMP/llama-bench" "$TMP/llama-build/bin/llama-bench"
}
if [[ -n "$LLAMA_BENCH" ]]; then
  [[ -x "$LLAMA_BENCH" ]] || die "--llama-bench $LLAMA_BENCH is not an executable"
  strip -o "$TMP/llama-bench" "$LLAMA_BENCH"
else
  build_llama_bench
fi
xz -T0 -6 -c "$TMP/llama-bench" > "$PACK/llama-bench.xz"

# Shared libraries a bare host may lack (libc and libstdc++ it has).
for exe in "$TMP/moec" "$PACK/model-run" "$TMP/llama-bench"; do
  ldd "$exe" | awk '/=> \//{print $3}'
done | sort -u | while read -r so; do
  case "$(basename "$so")" in
    libc.so*|libm.so*|libstdc++.so*|libgcc_s.so*|ld-linux*) ;;
    *) cp -L "$so" "$PACK/lib/" ;;
  esac
done

cp "$VOCAB" "$PACK/vocab.gguf"
# decode_prefill.py's prompt: 128 fixed pseudo-random ids of the vocabulary.
VOCAB_SIZE=$("$MOEC" inspect "$GGUF" | awk '/^vocabulary/{print $2; exit}')
python3 -c "import sys; sys.path.insert(0, '$ROOT/bench'); import decode_prefill as d; \
print(','.join(map(str, d.prompt_ids(128, $VOCAB_SIZE))))" > "$PACK/prompt.txt"
cp "$HERE/run.sh" "$PACK/run.sh"
echo "$TARGET" > "$PACK/target"
log "packed $(du -sh "$PACK" | cut -f1) into $PACK; there: bash $PACK/run.sh"
