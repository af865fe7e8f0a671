#!/usr/bin/env bash
# The main job: set up, build, compile the bundled example MoE model for the
# host and run it.
#
# It ends with the compiled model writing text: a prompt in, the generated
# text streamed out, and llama.cpp-style timings.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${MOEC_BUILD_DIR:-$root/build}
bin=$build_dir/bin
out=${MOEC_EXAMPLE_OUT:-$build_dir/example}

step() { printf '\n== %s\n' "$*"; }

step "setup and build"
bash "$root/scripts/setup.sh"
cmake --build "$build_dir"

step "the compiler's dialects: an example sparse MoE layer in moe + qnt IR"
"$bin/moec-opt" --show-dialects
"$bin/moec-opt" "$root/examples/sparse-moe-layer.mlir" -canonicalize

model=$root/examples/model/moe-example-f16.gguf
step "the example model: a 22M-parameter Qwen3-MoE trained here (examples/model/README.md)"
"$bin/moec" inspect "$model" | sed -n '1,12p'
mkdir -p "$out"
cp "$model" "$out/example.gguf"

step "its tokenizer on a prompt (moec tokenize, the runtime's tokenizer)"
prompt="The module provides functions for"
echo "\"$prompt\" ->" $(printf '%s' "$prompt" | "$bin/moec" tokenize --model "$model" --bos)

step "import it into moe + qnt IR (moec --compile-to=input)"
"$bin/moec" "$out/example.gguf" --compile-to=input -o "$out/example.mlir"
"$bin/moec-opt" "$out/example.mlir" -o /dev/null
echo "$out/example.mlir: $(wc -c <"$out/example.mlir") bytes of IR, verified; its MoE part:"
grep -E "moe\.(route|dispatch|expert_ffn|combine)" "$out/example.mlir" | head -n 4

step "plan it under a memory budget and write its weight bundle (moec bundle)"
"$bin/moec" bundle "$out/example.gguf" --target=host --memory-budget=64MiB \
  -o "$out/example.moeb"
"$bin/moec" inspect "$out/example.moeb" | grep -E "^(plan|expert extents)" | cut -c1-160

step "compile it for the host (moec MODEL -o DIR)"
"$bin/moec" "$out/example.gguf" --target=host -o "$out/host"
ls -l "$out/host"
step "run it on token ids: the prompt's, then 32 greedy steps (out/model-run --prompt-ids)"
ids=$(printf '%s' "$prompt" | "$bin/moec" tokenize --model "$model" --bos | tr ' ' ',')
echo "prompt ids: $ids"
"$out/host/model-run" --prompt-ids "$ids" -n 32

step "run it on text: the prompt, then 96 sampled tokens (out/model-run -p)"
"$out/host/model-run" -p "$prompt" -n 96 --temp 0.7 --seed 42
