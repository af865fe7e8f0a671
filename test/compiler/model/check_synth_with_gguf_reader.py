#!/usr/bin/env python3
"""Reads every file `moec synth` writes with the GGUF project's own reader
(gguf.GGUFReader), for every family and every tensor type moec computes
with, and checks what it finds against what was asked for: architecture and
hyper-parameters, the tensor names, types and shapes of the family, that the
tokenizer was copied, and that every weight dequantizes (with gguf.quants)
to finite values of a sensible scale.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGUFReader, GGMLQuantizationType as T
from gguf.quants import dequantize

FAMILIES = {  # moec name -> (GGUF architecture, has shared expert)
    "qwen3moe": ("qwen3moe", False),
    "qwen2moe": ("qwen2moe", True),
    "mixtral": ("llama", False),
    "olmoe": ("olmoe", False),
}
TYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
         "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "MXFP4"]


def field(reader, key):
    f = reader.fields[key]
    return f.contents()


def check(moec, family, qtype, vocab, tmp):
    # The 32,000-token vocabulary is copied once per family; the other files
    # use a small synthetic vocabulary size (GGUFReader parses every token).
    copy_vocab = qtype == "Q8_0"
    arch, shared = FAMILIES[family]
    path = os.path.join(tmp, f"{family}-{qtype}.gguf")
    # K-quants need rows of 256: size the model so every row qualifies.
    sizes = ["--hidden=256", "--expert-ffn=256", "--heads=4", "--kv-heads=2",
             "--head-dim=64", "--experts=4", "--experts-used=2", "--layers=2"]
    if shared:
        sizes.append("--shared-ffn=256")
    cmd = [moec, "synth", f"--family={family}", "--seed=7",
           f"--vocab={vocab}" if copy_vocab else "--vocab-size=512",
           f"--experts-type={qtype}", f"--attention-type={qtype}",
           f"--embeddings-type={qtype}", "-o", path] + sizes
    subprocess.run(cmd, check=True, capture_output=True)
    r = GGUFReader(path)
    problems = []
    if field(r, "general.architecture") != arch:
        problems.append(f"architecture {field(r, 'general.architecture')}")
    expect = {"embedding_length": 256, "block_count": 2, "expert_count": 4,
              "expert_used_count": 2, "attention.head_count": 4,
              "attention.head_count_kv": 2}
    for key, value in expect.items():
        got = field(r, f"{arch}.{key}")
        if got != value:
            problems.append(f"{arch}.{key} = {got}, expected {value}")
    if copy_vocab:
        tokens = field(r, "tokenizer.ggml.tokens")
        if len(tokens) != 32000 or tokens[1] != "<s>":
            problems.append("tokenizer not copied")
        if field(r, "tokenizer.ggml.model") != "llama":
            problems.append("tokenizer model not copied")
    elif "tokenizer.ggml.tokens" in r.fields:
        problems.append("tokenizer written without --vocab")
    names = {t.name: t for t in r.tensors}
    for required in ["token_embd.weight", "output.weight", "blk.1.ffn_gate_exps.weight",
                     "blk.1.ffn_down_exps.weight", "blk.0.ffn_gate_inp.weight"]:
        if required not in names:
            problems.append(f"missing {required}")
    if shared and "blk.0.ffn_gate_inp_shexp.weight" not in names:
        problems.append("missing shared expert gate")
    gate = names.get("blk.0.ffn_gate_exps.weight")
    if gate is not None:
        if gate.tensor_type != T[qtype]:
            problems.append(f"experts are {gate.tensor_type.name}")
        if list(gate.shape) != [256, 256, 4]:
            problems.append(f"expert shape {list(gate.shape)}")
    for t in r.tensors:
        values = dequantize(t.data, t.tensor_type).astype(np.float64).reshape(-1)
        if not np.all(np.isfinite(values)):
            problems.append(f"{t.name}: non-finite values")
            continue
        std = values.std()
        if "norm" not in t.name and not (1e-3 < std < 10.0):
            problems.append(f"{t.name}: standard deviation {std:.3g}")
    status = "ok  " if not problems else "FAIL"
    print(f"{status} {family:9s} {qtype:6s} {len(r.tensors)} tensors"
          + ("" if not problems else ": " + "; ".join(problems[:4])))
    return not problems


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--moec", required=True)
    parser.add_argument("--vocab", required=True)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in FAMILIES:
            for qtype in TYPES:
                results.append(check(args.moec, family, qtype, args.vocab, tmp))
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
