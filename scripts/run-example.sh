#!/usr/bin/env bash
# The main job: set up, build, compile the bundled example MoE model for the
# host and run it.
#
# It runs as far as the project goes today and says plainly what is not there
# yet; each later step lands with its issue (import, CPU code generation,
# runtime, tokenizer/CLI, example model).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${MOEC_BUILD_DIR:-$root/build}
bin=$build_dir/bin
out=${MOEC_EXAMPLE_OUT:-$build_dir/example}

step() { printf '\n== %s\n' "$*"; }
missing() {
  printf '\nNOT THERE YET: %s\n' "$1"
  printf 'The main job stops here; everything above ran for real.\n'
  exit 0
}

step "setup and build"
bash "$root/scripts/setup.sh"
cmake --build "$build_dir"

step "the compiler's dialects: an example sparse MoE layer in moe + qnt IR"
"$bin/moec-opt" --show-dialects
"$bin/moec-opt" "$root/examples/sparse-moe-layer.mlir" -canonicalize

step "write the example model (moec synth)"
[[ -x $bin/moec ]] || missing "the moec driver and 'moec synth' (the import issue) do not exist yet, so there is no model to compile"
mkdir -p "$out"
"$bin/moec" synth --family=qwen3moe --preset=tiny -o "$out/example.gguf"

step "compile it for the host"
"$bin/moec" "$out/example.gguf" --target=host -o "$out/host" ||
  missing "compiling for the host (the CPU code generation issue)"

step "run it"
[[ -x $out/host/model-run ]] || missing "out/model-run (the runtime and CLI issues)"
"$out/host/model-run" -p "Once upon a time" -n 32
