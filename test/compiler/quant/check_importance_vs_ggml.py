#!/usr/bin/env python3
"""Checks moec's importance-weighted quantizer against ggml's own
(llama.cpp's quantize with an imatrix) on ggml_imatrix_fixture.npz, written
by make_ggml_imatrix_fixtures.py: the same rows, the same importance.

First, moec's reimplementation of ggml's search (quantizeRowLikeGgml, one
of the importance quantizer's candidates) must write ggml's blocks byte for
byte.

Both sides' blocks are dequantized with the gguf package and weighed with
the importance-weighted squared error E = sum_i imatrix_i (x_i - q_i)^2
(what moec's quantizer minimizes). Per format, moec's total E over the
fixture must be at most ggml's plus --tolerance (0.5%); the table printed
gives the ratios to ggml and to moec's round-to-nearest quantizer, and how
many rows moec does no worse than ggml.
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


def errors(x, blocks, name, imatrix):
    """Per-row importance-weighted squared errors of `blocks`."""
    with np.errstate(all="ignore"):
        q = np.asarray(dequantize(blocks, T[name]), dtype=np.float64)
    q = q.reshape(x.shape)
    return ((x.astype(np.float64) - q) ** 2 * imatrix).sum(axis=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tool", required=True)
    parser.add_argument("--fixture", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)),
        "ggml_imatrix_fixture.npz"))
    parser.add_argument("--tolerance", type=float, default=0.005)
    args = parser.parse_args()

    data = np.load(args.fixture)
    x = data["x"].astype(np.float32)
    imatrix = data["imatrix"].astype(np.float32)
    imp = imatrix.astype(np.float64)
    ok = True
    print(f"{x.shape[0]} rows of {x.shape[1]}: importance-weighted squared "
          f"error relative to ggml's (and to moec's round to nearest)")
    print("| format | ggml E | moec E | moec / ggml | moec / RTN | "
          "rows moec <= ggml | port = ggml |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "x.f32")
        imx = os.path.join(tmp, "imatrix.f32")
        x.tofile(src)
        imatrix.tofile(imx)
        for name in FORMATS:
            like_path = os.path.join(tmp, name + ".like")
            subprocess.run([args.tool, "--quantize-like-ggml", name.lower(),
                            src, imx, like_path], check=True)
            like = np.fromfile(like_path, dtype=np.uint8)
            identical = np.array_equal(like, data["blocks_" + name])
            if not identical:
                differ = int((like != data["blocks_" + name]).sum())
                print(f"FAIL {name}: moec's port of ggml's search differs "
                      f"from ggml's blocks in {differ} bytes")
                ok = False
            ours_path = os.path.join(tmp, name + ".imp")
            rtn_path = os.path.join(tmp, name + ".rtn")
            subprocess.run([args.tool, "--quantize-importance", name.lower(),
                            src, imx, ours_path], check=True)
            subprocess.run([args.tool, "--quantize", name, src, rtn_path],
                           check=True)
            theirs = errors(x, data["blocks_" + name], name, imp)
            ours = errors(x, np.fromfile(ours_path, dtype=np.uint8), name, imp)
            rtn = errors(x, np.fromfile(rtn_path, dtype=np.uint8), name, imp)
            ratio = ours.sum() / theirs.sum()
            wins = int((ours <= theirs * (1 + 1e-12)).sum())
            print(f"| {name} | {theirs.sum():.6g} | {ours.sum():.6g} | "
                  f"{ratio:.4f} | {ours.sum() / rtn.sum():.4f} | "
                  f"{wins}/{len(ours)} | {'yes' if identical else 'NO'} |")
            if not ratio <= 1 + args.tolerance:
                print(f"FAIL {name}: moec's error is {ratio:.4f} times "
                      f"ggml's (allowed {1 + args.tolerance})")
                ok = False
    print("ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
