#!/usr/bin/env python3
"""Writes ggml_imatrix_fixture.npz: rows quantized by ggml itself with an
importance matrix, for check_importance_vs_ggml.py to compare moec's
importance-weighted quantizer against.

Run by hand (not by ctest) with a Python that has llama-cpp-python, whose
wheel ships libggml-base.so:

  /var/tmp/moec-bench/llama-venv/bin/python \\
      test/compiler/quant/make_ggml_imatrix_fixtures.py

The fixture holds 64 rows of 512 weights (f16 values, as a model's are)
of several shapes: Gaussian, heavy-tailed (Student t, 3 degrees of
freedom), with outliers, with a shifted mean, all one sign; one
heavy-tailed importance vector (log-normal, a few columns 100x, a few
zero) shared by the rows, as an imatrix is per column; and per format the
blocks ggml_quantize_chunk writes for them with that imatrix. The blocks,
not ggml's errors, are stored so that the check measures both sides with
the same (gguf-exact) dequantizer.
"""

import argparse
import ctypes
import glob
import os
import sys

import numpy as np

# ggml type ids (ggml.h), block size, bytes per block.
FORMATS = {
    "Q4_0": (2, 32, 18),
    "Q4_1": (3, 32, 20),
    "Q5_0": (6, 32, 22),
    "Q5_1": (7, 32, 24),
    "Q8_0": (8, 32, 34),
    "Q2_K": (10, 256, 84),
    "Q3_K": (11, 256, 110),
    "Q4_K": (12, 256, 144),
    "Q5_K": (13, 256, 176),
    "Q6_K": (14, 256, 210),
    "MXFP4": (39, 32, 17),
}
ROWS, COLS = 64, 512


def find_ggml():
    import llama_cpp  # noqa: F401  (only to find the wheel's lib folder)
    lib = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    paths = sorted(glob.glob(os.path.join(lib, "libggml-base.so*")))
    if not paths:
        sys.exit(f"no libggml-base.so in {lib}")
    ggml = ctypes.CDLL(paths[0])
    # size_t ggml_quantize_chunk(enum ggml_type type, const float * src,
    #     void * dst, int64_t start, int64_t nrows, int64_t n_per_row,
    #     const float * imatrix);
    ggml.ggml_quantize_chunk.restype = ctypes.c_size_t
    ggml.ggml_quantize_chunk.argtypes = [
        ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    ggml.ggml_quantize_init.argtypes = [ctypes.c_int]
    ggml.ggml_quantize_init.restype = None
    return ggml, paths[0]


def make_rows(rng):
    rows = []
    kinds = ["gaussian", "student", "outliers", "shifted", "positive",
             "mixed-scale"]
    for r in range(ROWS):
        kind = kinds[r % len(kinds)]
        scale = 0.02 * 10.0 ** rng.uniform(-1, 1)
        if kind == "gaussian":
            x = rng.standard_normal(COLS)
        elif kind == "student":
            x = rng.standard_t(3, COLS)
        elif kind == "outliers":
            x = rng.standard_normal(COLS)
            idx = rng.choice(COLS, 6, replace=False)
            x[idx] *= rng.uniform(8, 30, 6)
        elif kind == "shifted":
            x = rng.standard_normal(COLS) + rng.choice([-1.5, 1.5])
        elif kind == "positive":
            x = np.abs(rng.standard_normal(COLS))
        else:
            # Sub-blocks of very different scales.
            x = rng.standard_normal(COLS) * np.repeat(
                10.0 ** rng.uniform(-1.5, 0.5, COLS // 16), 16)
        rows.append(x * scale)
    # f16 values, as the weights of a model are.
    return np.asarray(rows).astype(np.float16)


def make_imatrix(rng):
    imatrix = np.exp(1.5 * rng.standard_normal(COLS))
    imatrix[rng.choice(COLS, 8, replace=False)] *= 100.0
    imatrix[rng.choice(COLS, 4, replace=False)] = 0.0
    return imatrix.astype(np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)),
        "ggml_imatrix_fixture.npz"))
    parser.add_argument("--seed", type=int, default=20260516)
    args = parser.parse_args()

    ggml, path = find_ggml()
    rng = np.random.default_rng(args.seed)
    x16 = make_rows(rng)
    x = np.ascontiguousarray(x16.astype(np.float32))
    imatrix = make_imatrix(rng)
    arrays = {"x": x16, "imatrix": imatrix}
    for name, (type_id, block, block_bytes) in FORMATS.items():
        ggml.ggml_quantize_init(type_id)
        size = ROWS * COLS // block * block_bytes
        dst = np.zeros(size, dtype=np.uint8)
        written = ggml.ggml_quantize_chunk(
            type_id, x.ctypes.data, dst.ctypes.data, 0, ROWS, COLS,
            imatrix.ctypes.data)
        if written != size:
            sys.exit(f"{name}: ggml wrote {written} bytes, expected {size}")
        arrays["blocks_" + name] = dst
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes) with {path}")


if __name__ == "__main__":
    main()
