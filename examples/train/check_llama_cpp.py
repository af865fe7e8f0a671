#!/usr/bin/env python3
"""By-hand check of the example model against llama.cpp's own code (PyPI's
llama-cpp-python, which builds llama.cpp; not in CI: it compiles for minutes).

    python3 -m venv /work/llama-venv
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
      -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DLLAMA_CURL=OFF" \
      /work/llama-venv/bin/pip install llama-cpp-python numpy
    /work/llama-venv/bin/python examples/train/check_llama_cpp.py \
      --moec build/bin/moec --reference build/bin/moec-reference \
      --heldout /work/example-data/heldout.txt

Checks (1) that llama.cpp's token ids for the held-out text equal
`moec tokenize`'s, and (2) the logits of llama.cpp and of moec's reference
executor for BOS + the first 31 held-out tokens (max |diff| / max |logit|
and top-1 agreement).
"""
import argparse
import subprocess

import llama_cpp
import numpy as np

MODEL = "examples/model/moe-example-f16.gguf"


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--moec", required=True)
    p.add_argument("--reference", required=True)
    p.add_argument("--heldout", required=True)
    args = p.parse_args()
    text = open(args.heldout, encoding="utf-8").read()

    vocab = llama_cpp.Llama(model_path=MODEL, vocab_only=True, verbose=False)
    theirs = vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    ours = [int(x) for x in subprocess.run(
        [args.moec, "tokenize", "--model", MODEL], input=text.encode("utf-8"),
        capture_output=True, check=True).stdout.split()]
    print(f"llama.cpp {llama_cpp.__version__}: {len(theirs)} tokens, moec "
          f"{len(ours)}, identical: {theirs == ours}")

    llm = llama_cpp.Llama(model_path=MODEL, n_ctx=256, logits_all=True,
                          verbose=False, n_threads=2)
    tokens = [0] + theirs[:31]
    llm.eval(tokens)
    ref = np.array(llm.scores[:len(tokens)], dtype=np.float64)
    out = subprocess.run([args.reference, MODEL,
                          "--tokens=" + ",".join(map(str, tokens))],
                         capture_output=True, check=True, text=True).stdout
    mine = np.array(out.split(), dtype=np.float64).reshape(len(tokens), -1)
    diff, peak = np.abs(mine - ref).max(), np.abs(ref).max()
    print(f"logits over {len(tokens)} positions: max |diff| {diff:.3g}, max "
          f"|logit| {peak:.3g}, ratio {diff / peak:.3g}, top-1 agreement "
          f"{np.mean(mine.argmax(1) == ref.argmax(1)):.3f}")


if __name__ == "__main__":
    main()
