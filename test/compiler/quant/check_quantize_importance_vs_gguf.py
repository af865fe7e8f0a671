#!/usr/bin/env python3
"""Checks that moec's importance-weighted quantizer writes valid GGUF blocks
for every GGUF format it quantizes (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, MXFP4,
Q2_K..Q6_K): the GGUF project's own dequantizer (gguf.quants.dequantize)
reads them to finite values bit-identical to moec's reference
dequantization, and their importance-weighted squared error is, row by row,
at most that of moec's round-to-nearest quantizer (which the importance
quantizer's candidates include).

Rows of 512: Gaussian at scales from 1e-4 to 1e3, heavy-tailed, with
outliers, all one sign, shifted, zeros, sub-blocks of zeros, and magnitudes
small enough to make the f16 scales subnormal; one heavy-tailed importance
vector per run (log-normal, columns 100x and zero), then uniform
importance ("-": rows of one block).
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

FORMATS = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "MXFP4", "Q2_K", "Q3_K",
           "Q4_K", "Q5_K", "Q6_K"]
COLS = 512


def make_rows(count, rng):
    x = rng.standard_normal((count, COLS))
    kind = np.arange(count) % 9
    x *= 10.0 ** rng.uniform(-4, 3, (count, 1))
    x[kind == 1] = rng.standard_t(3, (int((kind == 1).sum()), COLS))
    out = x[kind == 2]
    out[np.arange(len(out)), rng.integers(0, COLS, len(out))] *= 50.0
    x[kind == 2] = out
    x[kind == 3] = -np.abs(x[kind == 3])
    x[kind == 4] = np.abs(x[kind == 4])
    x[kind == 5] += rng.choice([-3.0, 3.0], (int((kind == 5).sum()), 1))
    x[kind == 6] = 0
    zeroed = x[kind == 7].reshape(-1, COLS // 16, 16)
    zeroed[rng.random(zeroed.shape[:2]) < 0.3] = 0
    x[kind == 7] = zeroed.reshape(-1, COLS)
    x[kind == 8] *= 10.0 ** rng.uniform(-9, -5, (int((kind == 8).sum()), 1))
    return x.astype(np.float32)


def make_importance(rng):
    imp = np.exp(1.5 * rng.standard_normal(COLS))
    imp[rng.choice(COLS, 8, replace=False)] *= 100
    imp[rng.choice(COLS, 4, replace=False)] = 0
    return imp.astype(np.float32)


def dequantize_gguf(blocks, name, shape):
    with np.errstate(all="ignore"):
        y = np.asarray(dequantize(blocks, T[name]), dtype=np.float32)
    return y.reshape(-1)[: np.prod(shape)].reshape(shape) \
        if y.size == np.prod(shape) else None


def check(tool, name, x, imp, tmp):
    """imp: importance vector, or None for uniform importance."""
    src = os.path.join(tmp, "x.f32")
    imx = os.path.join(tmp, "imp.f32")
    ours_blocks = os.path.join(tmp, name + ".imp")
    ours_values = os.path.join(tmp, name + ".out")
    rtn_blocks = os.path.join(tmp, name + ".rtn")
    x.tofile(src)
    if imp is not None:
        imp.tofile(imx)
    subprocess.run([tool, "--quantize-importance", name.lower(), src,
                    imx if imp is not None else "-", ours_blocks], check=True)
    subprocess.run([tool, name, ours_blocks, ours_values], check=True)
    subprocess.run([tool, "--quantize", name, src, rtn_blocks], check=True)
    blocks = np.fromfile(ours_blocks, dtype=np.uint8)
    ours = np.fromfile(ours_values, dtype=np.float32).reshape(x.shape)
    theirs = dequantize_gguf(blocks, name, x.shape)
    label = f"{name} ({'importance' if imp is not None else 'uniform'})"
    if theirs is None:
        print(f"FAIL {label}: the blocks do not dequantize to {x.size} values")
        return False
    if not np.all(np.isfinite(theirs)):
        print(f"FAIL {label}: non-finite values")
        return False
    differ = np.nonzero((ours.view(np.uint32) !=
                         theirs.view(np.uint32)).any(axis=1))[0]
    if differ.size:
        print(f"FAIL {label}: moec and gguf dequantize {differ.size} rows "
              f"differently; first row {differ[0]}")
        return False
    rtn = dequantize_gguf(np.fromfile(rtn_blocks, dtype=np.uint8), name,
                          x.shape)
    w = (imp if imp is not None else np.ones(COLS)).astype(np.float64)
    xd = x.astype(np.float64)
    e_imp = (((xd - theirs) ** 2) * w).sum(axis=1)
    e_rtn = (((xd - rtn) ** 2) * w).sum(axis=1)
    worse = np.nonzero(e_imp > e_rtn * (1 + 1e-9) + 1e-300)[0]
    if worse.size:
        r = worse[0]
        print(f"FAIL {label}: {worse.size} rows worse than round to nearest; "
              f"row {r}: {e_imp[r]:.6g} > {e_rtn[r]:.6g}")
        return False
    print(f"ok   {label}: {len(x)} rows dequantize identically in moec and "
          f"gguf; weighted error / round to nearest's "
          f"{e_imp.sum() / e_rtn.sum():.4f}")
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tool", required=True)
    parser.add_argument("--rows", type=int, default=72)
    parser.add_argument("--seed", type=int, default=20260517)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in FORMATS:
            x = make_rows(args.rows, rng)
            results.append(check(args.tool, name, x, make_importance(rng), tmp))
            results.append(check(args.tool, name, x, None, tmp))
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
