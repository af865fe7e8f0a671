#!/usr/bin/env python3
"""Checks the reference executor against Hugging Face transformers.

For every family: writes one random tiny model (F32) as a safetensors
checkpoint and as GGUF with `moec synth`, runs the transformers class named
in its config.json on the checkpoint (in float64, and in float32), runs
`moec-reference` on both files, and compares the logits of every position
relative to max |logit|.

Needs torch and transformers, which the project's venv does not install
(they are large): run it by hand with a Python that has them, e.g.

  python -m venv /tmp/hf && /tmp/hf/bin/pip install torch transformers
  /tmp/hf/bin/python test/reference/check_against_transformers.py \\
      --moec build/bin/moec --reference build/bin/moec-reference

Exits non-zero when the float64 comparison exceeds --tolerance.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

FAMILIES = ["qwen3moe", "qwen2moe", "mixtral", "olmoe"]


def reference_logits(reference, model, tokens, vocab, out):
    subprocess.run([reference, model, "--tokens=" + ",".join(map(str, tokens)),
                    "-o", out], check=True)
    return np.fromfile(out, dtype="<f4").reshape(len(tokens), vocab)


def hf_logits(checkpoint, tokens, dtype):
    import torch
    from transformers import AutoModelForCausalLM

    # The plain ("eager") attention and experts: torch's grouped matmul has no
    # float64.
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=dtype,
                                                 attn_implementation="eager",
                                                 experts_implementation="eager")
    model.eval()
    with torch.no_grad():
        out = model(torch.tensor([tokens]), use_cache=False)
    return out.logits[0].to(torch.float64).numpy()


def relative(a, b):
    return float(np.max(np.abs(a.astype(np.float64) - b)) / np.max(np.abs(b)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moec", required=True)
    parser.add_argument("--reference", required=True)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--tolerance", type=float, default=1e-5)
    args = parser.parse_args()

    import torch
    import transformers
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    failed = []
    for family in args.families.split(","):
        with tempfile.TemporaryDirectory() as d:
            common = [args.moec, "synth", "--family=" + family,
                      "--seed=" + str(args.seed), "--experts-type=f32",
                      "--attention-type=f32", "--embeddings-type=f32", "-t", "1"]
            checkpoint = os.path.join(d, "ckpt")
            gguf = os.path.join(d, "model.gguf")
            subprocess.run(common + ["--format=safetensors", "-o", checkpoint],
                           check=True, stdout=subprocess.DEVNULL)
            subprocess.run(common + ["-o", gguf], check=True,
                           stdout=subprocess.DEVNULL)
            with open(os.path.join(checkpoint, "config.json")) as f:
                vocab = json.load(f)["vocab_size"]
            tokens = [(37 * i * i + 11 * i + 5) % vocab for i in range(args.tokens)]
            out = os.path.join(d, "logits.f32")
            ref_hf = reference_logits(args.reference, checkpoint, tokens, vocab, out)
            ref_gguf = reference_logits(args.reference, gguf, tokens, vocab, out)
            hf64 = hf_logits(checkpoint, tokens, torch.float64)
            hf32 = hf_logits(checkpoint, tokens, torch.float32)
            r64, r32 = relative(ref_hf, hf64), relative(ref_hf, hf32)
            rg = relative(ref_gguf, hf64)
            print(f"{family:9s} max|logit| {np.max(np.abs(hf64)):.3f}  "
                  f"reference(safetensors) vs HF f64 {r64:.2e}, vs HF f32 {r32:.2e}; "
                  f"reference(GGUF) vs HF f64 {rg:.2e}")
            if max(r64, rg) > args.tolerance:
                failed.append(family)
    if failed:
        print("FAILED: " + ", ".join(failed))
        return 1
    print("all families agree with transformers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
