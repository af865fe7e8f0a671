#!/usr/bin/env python3
"""Checks that moec's round-to-nearest k-quant quantizers (Q2_K, Q3_K, Q4_K,
Q5_K, Q6_K) write valid GGUF blocks: the GGUF project's own dequantizer
(gguf.quants.dequantize) reads them to finite values bit-identical to moec's
reference dequantization, and to values close to the input.

moec's k-quant quantizers are not llama.cpp's (which search for scales), and
the gguf package has no k-quant quantizer, so the blocks themselves are not
compared (check_quantize_vs_gguf.py does that for the simple formats).

The rows, at least --blocks super-blocks of 256 per format: Gaussian at
scales from 1e-4 to 1e3, zeros, constants, one outlier, all negative, all
positive, a shifted mean, sub-blocks of zeros, and magnitudes small enough
to make the f16 scales subnormal or zero. On the Gaussian rows the RMS error
relative to the input's RMS (gguf's dequantization against the input) must
stay below the same per-format bounds as QuantizeKQuantsTest.cpp's.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

# Relative RMS error bounds on Gaussian rows (measured: Q2_K 0.330, Q3_K
# 0.155, Q4_K 0.078, Q5_K 0.038, Q6_K 0.0188).
BOUNDS = {"Q2_K": 0.36, "Q3_K": 0.17, "Q4_K": 0.086, "Q5_K": 0.042,
          "Q6_K": 0.021}
QK_K = 256


def make_rows(count, rng):
    """Returns (rows, number of leading Gaussian rows)."""
    gaussian = count // 2
    scales = 10.0 ** rng.uniform(-4, 3, size=(gaussian, 1))
    g = rng.standard_normal((gaussian, QK_K)) * scales
    k = max(1, (count - gaussian) // 8)
    rest = rng.standard_normal((count - gaussian, QK_K))
    rest[0:k] = 0                                          # zeros
    rest[k:2 * k] = rng.standard_normal((k, 1)) * 10.0 ** rng.uniform(-3, 3, (k, 1))
    outliers = rest[2 * k:3 * k]
    outliers[np.arange(k), rng.integers(0, QK_K, k)] = rng.choice([-50.0, 50.0], k)
    rest[3 * k:4 * k] = -np.abs(rest[3 * k:4 * k])         # all negative
    rest[4 * k:5 * k] = np.abs(rest[4 * k:5 * k])          # all positive
    rest[5 * k:6 * k] += rng.choice([-3.0, 3.0], (k, 1))   # shifted mean
    zeroed = rest[6 * k:7 * k].reshape(k, 16, 16)          # zero sub-blocks
    zeroed[rng.random((k, 16)) < 0.3] = 0
    rest[7 * k:] *= 10.0 ** rng.uniform(-9, -5, (count - gaussian - 7 * k, 1))
    return np.concatenate([g, rest]).astype(np.float32), gaussian


def check(tool, name, count, rng, tmp):
    x, gaussian = make_rows(count, rng)
    src = os.path.join(tmp, name + ".f32")
    blocks_path = os.path.join(tmp, name + ".q")
    ours_path = os.path.join(tmp, name + ".out")
    x.tofile(src)
    subprocess.run([tool, "--quantize", name, src, blocks_path], check=True)
    subprocess.run([tool, name, blocks_path, ours_path], check=True)
    blocks = np.fromfile(blocks_path, dtype=np.uint8)
    ours = np.fromfile(ours_path, dtype=np.float32).reshape(x.shape)
    with np.errstate(all="ignore"):
        theirs = np.asarray(dequantize(blocks, T[name]), dtype=np.float32)
    theirs = theirs.reshape(-1)
    if theirs.size != x.size:
        print(f"FAIL {name}: {blocks.size} bytes dequantize to {theirs.size} "
              f"values, expected {x.size}")
        return False
    theirs = theirs.reshape(x.shape)
    if not np.all(np.isfinite(theirs)):
        bad = np.nonzero(~np.isfinite(theirs).all(axis=1))[0]
        print(f"FAIL {name}: non-finite values in {bad.size} blocks, first "
              f"block {bad[0]}")
        return False
    differ = np.nonzero((ours.view(np.uint32) != theirs.view(np.uint32)).any(axis=1))[0]
    if differ.size:
        b = differ[0]
        print(f"FAIL {name}: moec and gguf dequantize {differ.size} of {count} "
              f"blocks differently; first block {b}: moec {ours[b][:8].tolist()} "
              f"gguf {theirs[b][:8].tolist()}")
        return False
    g, y = x[:gaussian].astype(np.float64), theirs[:gaussian].astype(np.float64)
    per_block = np.sqrt(((g - y) ** 2).mean(axis=1) / (g ** 2).mean(axis=1))
    rel = float(np.sqrt((per_block ** 2).mean()))
    worst = float(per_block.max())
    if rel >= BOUNDS[name] or worst >= 1.25 * BOUNDS[name]:
        print(f"FAIL {name}: relative RMS error {rel:.4f} (worst block "
              f"{worst:.4f}), bound {BOUNDS[name]} (1.25x per block)")
        return False
    print(f"ok   {name}: {count} super-blocks dequantize identically in moec "
          f"and gguf; Gaussian relative RMS error {rel:.4f} (worst block "
          f"{worst:.4f}, bound {BOUNDS[name]})")
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tool", required=True)
    parser.add_argument("--blocks", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=20261126)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in BOUNDS:
            results.append(check(args.tool, name, args.blocks, rng, tmp))
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
