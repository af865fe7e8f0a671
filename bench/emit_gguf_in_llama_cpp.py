#!/usr/bin/env python3
"""By hand: a GGUF that `moec --emit=gguf` wrote, in llama.cpp.

Writes the compressed model with the given moec flags, loads it in
llama.cpp (llama-cpp-python), and measures its perplexity on the text with
llama.cpp's protocol (windows of -c tokens, each window's first token
replaced by BOS, the second half of each window scored), next to what
moec's own compiled model-run gives for the same file and windows. The
issue's bound: within 1%.

    /path/to/llama-venv/bin/python bench/emit_gguf_in_llama_cpp.py \\
        --moec build/bin/moec --model examples/model/moe-example-f16.gguf \\
        --text heldout.txt -- --bits-per-weight=3 --calibration=calib.dat

(run with a python that has llama-cpp-python; moec flags after --)
"""

import argparse
import math
import os
import re
import subprocess
import sys

import llama_cpp
import numpy as np


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--moec", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--text", required=True)
    p.add_argument("--workdir", default="/var/tmp/moec-emit-gguf")
    p.add_argument("-c", "--context", type=int, default=256)
    p.add_argument("--chunks", type=int, default=60)
    p.add_argument("flags", nargs="*", help="moec compression flags")
    a = p.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    gguf_path = os.path.join(a.workdir, "compressed.gguf")
    subprocess.run([a.moec, a.model, "--quiet", "--emit=gguf", "-o",
                    gguf_path] + a.flags, check=True)

    # moec: the same file compiled, perplexity by model-run.
    out = os.path.join(a.workdir, "out")
    subprocess.run([a.moec, gguf_path, "--quiet", "--activations=f32", "-o",
                    out], check=True)
    r = subprocess.run([os.path.join(out, "model-run"), "--perplexity", "-f",
                        a.text, "-c", str(a.context), "--chunks",
                        str(a.chunks), "-t", "2"], capture_output=True,
                       text=True, check=True)
    moec_ppl = float(re.search(r"PPL = ([0-9.]+)", r.stdout).group(1))

    # llama.cpp: the same windows of the same tokens.
    text = open(a.text, encoding="utf-8").read()
    llm = llama_cpp.Llama(model_path=gguf_path, n_ctx=a.context,
                          n_batch=a.context, logits_all=True, verbose=False,
                          n_threads=2)
    tokens = [llm.token_bos()] + llm.tokenize(text.encode("utf-8"),
                                              add_bos=False, special=False)
    n = a.context
    nll, count = 0.0, 0
    for c in range(min(a.chunks, len(tokens) // n)):
        window = tokens[c * n:(c + 1) * n]
        window[0] = llm.token_bos()
        llm.reset()
        llm.eval(window)
        logits = np.array(llm.scores[:n], dtype=np.float64)
        for j in range(n // 2, n - 1):
            row = logits[j]
            m = row.max()
            lse = m + math.log(np.exp(row - m).sum())
            nll += lse - row[tokens[c * n + j + 1]]
            count += 1
    llama_ppl = math.exp(nll / count)
    diff = abs(llama_ppl - moec_ppl) / moec_ppl
    print(f"{gguf_path} ({os.path.getsize(gguf_path)} bytes), flags "
          f"{' '.join(a.flags)}: llama.cpp {llama_cpp.__version__} PPL "
          f"{llama_ppl:.4f}, moec PPL {moec_ppl:.4f} over {count} "
          f"predictions: {100 * diff:.3f}% apart (bound 1%)")
    sys.exit(0 if diff <= 0.01 else 1)


if __name__ == "__main__":
    main()
