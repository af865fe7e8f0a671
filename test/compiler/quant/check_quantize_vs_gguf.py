#!/usr/bin/env python3
"""Checks moec's reference quantizers byte for byte against the GGUF
project's own (gguf.quants.quantize): Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, MXFP4,
F16 and BF16, on at least --blocks blocks each of finite values: normally
distributed rows at scales from 1e-6 to 1e4, blocks of zeros, constant
blocks, blocks whose largest magnitude is shared by a positive and a
negative element (the tie numpy's argmax breaks by position), values exactly
halfway between quantization steps, and subnormal values.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import quantize

# Not every type moec quantizes: its k-quant quantizers (Q2_K..Q6_K) are
# round to nearest, not llama.cpp's scale search, so their bytes differ by
# design (and the gguf package has no k-quant quantizer to compare with);
# check_quantize_kquants_vs_gguf.py checks that gguf reads those blocks.
TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "MXFP4", "F16", "BF16"]


def make_rows(block, count, rng):
    scales = 10.0 ** rng.uniform(-6, 4, size=(count, 1))
    x = (rng.standard_normal((count, block)) * scales).astype(np.float32)
    k = count // 10
    x[0:k] = 0                                        # zero blocks
    x[k:2 * k] = rng.standard_normal((k, 1)).astype(np.float32)  # constant
    ties = x[2 * k:3 * k]
    m = np.abs(ties).max(axis=1) * 1.5
    ties[:, 3] = m
    ties[:, 7] = -m                                   # |max| shared by +/-
    halves = x[3 * k:4 * k]
    halves[:] = (rng.integers(-16, 16, size=halves.shape) + 0.5).astype(np.float32) / 8
    x[4 * k:5 * k] *= np.float32(1e-38)               # subnormal magnitudes
    return x


def check(tool, name, count, rng, tmp):
    block = GGML_QUANT_SIZES[T[name]][0]
    block = max(block, 32)
    x = make_rows(block, count, rng)
    src = os.path.join(tmp, name + ".f32")
    dst = os.path.join(tmp, name + ".q")
    x.tofile(src)
    subprocess.run([tool, "--quantize", name, src, dst], check=True)
    ours = np.fromfile(dst, dtype=np.uint8)
    with np.errstate(all="ignore"):
        theirs = np.asarray(quantize(x, T[name])).view(np.uint8).reshape(-1)
    if ours.shape != theirs.shape:
        print(f"FAIL {name}: {ours.size} bytes, gguf gives {theirs.size}")
        return False
    bad = np.nonzero(ours != theirs)[0]
    if bad.size:
        bytes_per_block = GGML_QUANT_SIZES[T[name]][1] * (block // GGML_QUANT_SIZES[T[name]][0])
        b = bad[0] // bytes_per_block
        print(f"FAIL {name}: {bad.size} bytes differ in "
              f"{len(set(bad // bytes_per_block))} of {count} blocks; first in "
              f"block {b}: moec {ours[b*bytes_per_block:(b+1)*bytes_per_block].tobytes().hex()} "
              f"gguf {theirs[b*bytes_per_block:(b+1)*bytes_per_block].tobytes().hex()} "
              f"values {x[b].tolist()}")
        return False
    print(f"ok   {name}: {count} blocks of {block}, {ours.size} bytes identical")
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tool", required=True)
    parser.add_argument("--blocks", type=int, default=10240)
    parser.add_argument("--seed", type=int, default=20261125)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in TYPES:
            results.append(check(args.tool, name, args.blocks, rng, tmp))
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
