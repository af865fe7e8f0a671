#!/usr/bin/env python3
"""Checks moec's reference dequantizers bit for bit against the GGUF
project's own (gguf.quants.dequantize from PyPI's gguf package), and moec's
ggml type table against gguf.constants.GGML_QUANT_SIZES.

For every format it dequantizes at least --blocks random blocks: a third
fully random bytes, a third with ordinary finite scales, and a third with the
scale fields set to extreme values (largest half, smallest subnormal, +-0,
+-infinity, quiet and signalling NaN; every E8M0 exponent for MXFP4).
Results must have identical bit patterns, except that where the reference
gives a NaN moec must give a NaN whose payload and sign may differ: when both
operands of an addition are NaNs, IEEE 754 leaves which payload propagates to
the implementation, and numpy's compiled loops pick either operand (they
treat addition as commutative).
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize

# Byte offsets of the f16 scale fields (d, m, dmin) in each block.
HALF_FIELDS = {
    "F32": [], "F16": [], "BF16": [],
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2],
    "Q6_K": [208], "MXFP4": [],
}
SPECIAL_HALVES = np.array(
    [0x7BFF, 0xFBFF, 0x0001, 0x8001, 0x0400, 0x03FF, 0x0000, 0x8000,
     0x7C00, 0xFC00, 0x7E00, 0xFE00, 0x7C01, 0x7D55, 0x3C00, 0xBC00],
    dtype=np.uint16)


def make_blocks(name, count, rng):
    block_size, block_bytes = GGML_QUANT_SIZES[T[name]]
    blocks = rng.integers(0, 256, size=(count, block_bytes), dtype=np.uint8)
    fields = HALF_FIELDS[name]
    third = count // 3
    if fields:
        # Ordinary finite scales: |x| in [2^-10, 2^4).
        ordinary = (rng.integers(0x1400, 0x4C00, size=(third, len(fields)))
                    | (rng.integers(0, 2, size=(third, len(fields))) << 15))
        specials = rng.choice(SPECIAL_HALVES, size=(count - 2 * third, len(fields)))
        for j, offset in enumerate(fields):
            for rows, values in ((slice(third, 2 * third), ordinary),
                                 (slice(2 * third, count), specials)):
                v = values[:, j].astype(np.uint16)
                blocks[rows, offset] = (v & 0xFF).astype(np.uint8)
                blocks[rows, offset + 1] = (v >> 8).astype(np.uint8)
    elif name == "MXFP4":
        blocks[:256, 0] = np.arange(256, dtype=np.uint8)  # every exponent
    elif name in ("F16", "BF16"):
        v = rng.choice(SPECIAL_HALVES, size=(count - 2 * third,)).view(np.uint8)
        blocks[2 * third:, :] = v.reshape(-1, 2)
    elif name == "F32":
        specials = np.array([0x00000000, 0x80000000, 0x7F800000, 0xFF800000,
                             0x7FC00000, 0x7F800001, 0x00000001, 0x7F7FFFFF],
                            dtype=np.uint32)
        blocks[2 * third:, :] = rng.choice(specials, size=(count - 2 * third,)).view(np.uint8).reshape(-1, 4)
    return blocks


def check_format(tool, name, count, rng, tmp):
    blocks = make_blocks(name, count, rng)
    src = os.path.join(tmp, name + ".in")
    dst = os.path.join(tmp, name + ".out")
    blocks.tofile(src)
    subprocess.run([tool, name, src, dst], check=True)
    ours = np.fromfile(dst, dtype=np.uint32)
    with np.errstate(all="ignore"):  # NaN and infinite scales are the point
        theirs = dequantize(blocks.reshape(-1), T[name])
    theirs = np.asarray(theirs,
                        dtype=np.float32).reshape(-1).view(np.uint32)
    if ours.shape != theirs.shape:
        print(f"FAIL {name}: {ours.size} values, gguf gives {theirs.size}")
        return False
    both_nan = np.isnan(ours.view(np.float32)) & np.isnan(theirs.view(np.float32))
    bad = np.nonzero((ours != theirs) & ~both_nan)[0]
    nan = int(np.isnan(theirs.view(np.float32)).sum())
    inf = int(np.isinf(theirs.view(np.float32)).sum())
    if bad.size:
        block_size = GGML_QUANT_SIZES[T[name]][0]
        i = bad[0]
        print(f"FAIL {name}: {bad.size} of {ours.size} values differ; first at "
              f"element {i} (block {i // block_size}): moec 0x{ours[i]:08x} "
              f"({ours.view(np.float32)[i]!r}), gguf 0x{theirs[i]:08x} "
              f"({theirs.view(np.float32)[i]!r}); block bytes "
              f"{blocks[i // block_size].tobytes().hex()}")
        return False
    print(f"ok   {name}: {count} blocks, {ours.size} values bit-exact "
          f"({nan} NaN, {inf} infinite)")
    return True


def check_type_table(tool):
    out = subprocess.run([tool, "--list-types"], check=True,
                         capture_output=True, text=True).stdout
    ours = {}
    for line in out.splitlines():
        tid, name, bs, bb, _ = line.split()
        ours[int(tid)] = (name, int(bs), int(bb))
    ok = True
    for qtype, (bs, bb) in GGML_QUANT_SIZES.items():
        if ours.get(int(qtype)) != (qtype.name, bs, bb):
            print(f"FAIL type {int(qtype)} {qtype.name}: gguf ({bs}, {bb}), "
                  f"moec {ours.get(int(qtype))}")
            ok = False
    extra = set(ours) - {int(q) for q in GGML_QUANT_SIZES}
    if extra:
        print(f"FAIL moec lists type ids gguf does not know: {sorted(extra)}")
        ok = False
    if ok:
        print(f"ok   type table: {len(ours)} ggml types match GGML_QUANT_SIZES")
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tool", required=True)
    parser.add_argument("--blocks", type=int, default=10240)
    parser.add_argument("--seed", type=int, default=20261125)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    results = [check_type_table(args.tool)]
    with tempfile.TemporaryDirectory() as tmp:
        for name in HALF_FIELDS:
            results.append(check_format(args.tool, name, args.blocks, rng, tmp))
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
