#!/usr/bin/env python3
"""Cross-check the shipped example model against moec.

Run (from the repository root, after building moec):
  python examples/train/verify.py --gguf examples/model/moe-example-f16.gguf \
      --model /work/example-export --data /work/example-data

1. Tokenizer: ids from `moec tokenize --model GGUF` (llama.cpp's gpt2 tokenization) must equal the
   `tokenizers` ids, on the first --chars characters of the held-out text and on the whole of it.
2. Logits: for a 32-token held-out prefix (BOS + the first 31 held-out tokens), `moec-reference`
   on the GGUF (F16) and on the safetensors directory must agree with torch within
   1e-3 x max|logit|.  The GGUF is compared with torch run on the same F16-rounded weights (compute
   in F32), and, for information, with the F32 weights.
3. Greedy generation from torch, for a look at the text the model writes.
"""
import argparse
import os
import subprocess

import numpy as np
import torch
from tokenizers import Tokenizer
from transformers import Qwen3MoeForCausalLM

BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "bin")


def moec_ids(gguf_path, text):
    r = subprocess.run([os.path.join(BIN, "moec"), "tokenize", "--model", gguf_path],
                       input=text.encode("utf-8"), capture_output=True, check=True)
    return [int(t) for t in r.stdout.decode().replace(",", " ").split()]


def moec_logits(model_path, tokens):
    r = subprocess.run([os.path.join(BIN, "moec-reference"), model_path,
                        "--tokens=" + ",".join(map(str, tokens))],
                       capture_output=True, check=True)
    return np.array([[float(v) for v in ln.split()] for ln in r.stdout.decode().splitlines() if ln.strip()])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default="examples/model/moe-example-f16.gguf")
    ap.add_argument("--model", default="/work/example-export")
    ap.add_argument("--data", default="/work/example-data")
    ap.add_argument("--chars", type=int, default=4000)
    ap.add_argument("--no-generate", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    bos = tok.token_to_id("<|endoftext|>")
    text = open(os.path.join(args.data, "heldout.txt"), encoding="utf-8").read()

    for name, t in ((f"first {args.chars} chars", text[:args.chars]), ("whole held-out text", text)):
        a, b = tok.encode(t).ids, moec_ids(args.gguf, t)
        n_diff = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
        print(f"tokenize {name} ({len(t)} chars): tokenizers {len(a)} ids, moec {len(b)} ids, "
              f"equal={a == b}" + ("" if a == b else f" first difference at {n_diff}"))

    prefix = [bos] + tok.encode(text).ids[:31]
    print("prefix ids:", ",".join(map(str, prefix)))
    model = Qwen3MoeForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    with torch.no_grad():
        ref32 = model(input_ids=torch.tensor([prefix]), use_cache=False).logits[0].double().numpy()
        m16 = Qwen3MoeForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
        for n, p in m16.named_parameters():
            if p.dim() >= 2 and "mlp.gate." not in n:  # F16 in the GGUF; norms and router stay F32
                p.copy_(p.half().float())
        ref16 = m16(input_ids=torch.tensor([prefix]), use_cache=False).logits[0].double().numpy()
    for label, path, ref in (("GGUF F16 vs torch(F16-rounded weights)", args.gguf, ref16),
                             ("GGUF F16 vs torch(F32 weights)", args.gguf, ref32),
                             ("safetensors vs torch(F32 weights)", args.model, ref32)):
        got = moec_logits(path, prefix)
        assert got.shape == ref.shape, (got.shape, ref.shape)
        err = np.abs(got - ref).max()
        scale = np.abs(ref).max()
        same_argmax = (got.argmax(-1) == ref.argmax(-1)).mean()
        print(f"{label}: max|diff| {err:.3e}, max|logit| {scale:.3f}, ratio {err / scale:.3e} "
              f"({'PASS' if err <= 1e-3 * scale else 'FAIL'} at 1e-3), argmax agreement {same_argmax:.3f}")

    if not args.no_generate:
        for prompt in ("The Python tutorial", "A list is", "def main():", "The following example shows"):
            ids = [bos] + tok.encode(prompt).ids
            with torch.no_grad():
                out = model.generate(torch.tensor([ids]), max_new_tokens=48, do_sample=False,
                                     attention_mask=torch.ones(1, len(ids), dtype=torch.long))
            print("---", repr(prompt))
            print(tok.decode(out[0, 1:].tolist()))


if __name__ == "__main__":
    main()
