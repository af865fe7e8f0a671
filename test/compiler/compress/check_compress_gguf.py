#!/usr/bin/env python3
"""`moec MODEL --quantize... --emit=gguf` against the GGUF project's own
reader and quantizers (the gguf package).

For each case, moec writes the compressed model; the gguf package reads it
and every tensor is checked against the source model:

  * the type is the one asked for (class flags, --formats-from, the
    256-element fallback) and norms, biases and the router keep theirs;
  * kept tensors are byte-identical to the source;
  * where the gguf package quantizes the format (Q4_0, Q4_1, Q5_0, Q5_1,
    Q8_0, MXFP4), moec's blocks are byte-identical to
    gguf.quants.quantize of the source's values (F16 -> f32, exact);
  * every quantized tensor dequantizes (gguf.quants.dequantize) to values
    within a per-format relative RMS error of the source's;
  * the file's metadata is the source's (minus general.file_type, plus
    general.quantization_version).

Then the refusals: re-quantizing without --allow-requantize, an unknown
format, a format moec does not write, --emit=gguf without -o.
"""

import argparse
import os
import subprocess
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

# Relative RMS error of round-to-nearest on trained weights (measured on the
# example model: Q2_K 0.37, Q3_K 0.18, Q4_0 0.12, Q4_K 0.087, Q5_K 0.043,
# Q6_K 0.021, Q8_0 0.004, MXFP4 0.16); the bounds leave ~30% headroom.
RMS_BOUND = {
    T.Q2_K: 0.48, T.Q3_K: 0.24, T.Q4_K: 0.115, T.Q5_K: 0.057, T.Q6_K: 0.028,
    T.Q4_0: 0.16, T.Q4_1: 0.14, T.Q5_0: 0.08, T.Q5_1: 0.07, T.Q8_0: 0.006,
    T.MXFP4: 0.21, T.F16: 1e-3, T.BF16: 8e-3, T.F32: 0.0,
}
GGUF_QUANTIZES = {T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.MXFP4}
KEPT_SUFFIXES = ("_norm.weight", "ffn_gate_inp.weight", ".bias")


def run(cmd, expect_ok=True):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if expect_ok and r.returncode != 0:
        sys.exit(f"FAILED ({r.returncode}): {' '.join(cmd)}\n{r.stderr}")
    return r


def values(tensor):
    """A tensor's values as float32, in ggml row order (rows x elements)."""
    data = np.asarray(tensor.data)
    if tensor.tensor_type in (T.F32, T.F16):
        return data.astype(np.float32).reshape(-1, int(tensor.shape[0]))
    return dequantize(data, tensor.tensor_type).astype(np.float32).reshape(
        -1, int(tensor.shape[0]))


def kv_dict(reader):
    out = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        out[name] = [bytes(p).hex() for p in field.parts]
    return out


def check_case(a, name, flags, expect):
    path = os.path.join(a.workdir, name + ".gguf")
    run([a.moec, a.model, "--quiet", "--emit=gguf", "-o", path] + flags)
    src = {t.name: t for t in gguf.GGUFReader(a.model).tensors}
    out = gguf.GGUFReader(path)
    failures = []
    worst = {}
    for t in out.tensors:
        s = src[t.name]
        want = expect(t.name, s)
        if t.tensor_type != want:
            failures.append(f"{t.name}: {t.tensor_type.name}, expected "
                            f"{want.name}")
            continue
        if list(t.shape) != list(s.shape):
            failures.append(f"{t.name}: shape {list(t.shape)} vs "
                            f"{list(s.shape)}")
            continue
        if want == s.tensor_type:
            if bytes(np.asarray(t.data).tobytes()) != \
                    bytes(np.asarray(s.data).tobytes()):
                failures.append(f"{t.name}: kept tensor's bytes differ")
            continue
        x = values(s)
        if want in GGUF_QUANTIZES:
            ref = quantize(x, want)
            got = np.asarray(t.data).reshape(ref.shape)
            if not np.array_equal(ref, got):
                bad = int((ref != got).any(axis=1).sum())
                failures.append(f"{t.name}: {bad} rows of {want.name} blocks "
                                f"differ from gguf.quants.quantize")
        y = values(t)
        rel = float(np.sqrt(((y - x) ** 2).mean() / max((x ** 2).mean(),
                                                          1e-30)))
        worst[want.name] = max(worst.get(want.name, 0.0), rel)
        if not rel <= RMS_BOUND[want]:
            failures.append(f"{t.name}: {want.name} relative RMS error "
                            f"{rel:.4f} > {RMS_BOUND[want]}")
    src_kv = kv_dict(gguf.GGUFReader(a.model))
    out_kv = kv_dict(out)
    src_kv.pop("general.file_type", None)
    if "general.quantization_version" not in out_kv and any(
            t.tensor_type not in (T.F32, T.F16, T.BF16) for t in out.tensors):
        failures.append("general.quantization_version is missing")
    out_kv.pop("general.quantization_version", None)
    if src_kv != out_kv:
        diff = sorted(set(src_kv) ^ set(out_kv))
        changed = [k for k in src_kv if k in out_kv and src_kv[k] != out_kv[k]]
        failures.append(f"metadata differs: keys {diff}, values {changed}")
    summary = ", ".join(f"{k} {v:.4f}" for k, v in sorted(worst.items()))
    print(f"{name}: {len(out.tensors)} tensors; worst relative RMS error: "
          f"{summary}")
    for f in failures[:20]:
        print("  FAIL " + f)
    return not failures


def kept(name):
    return name.endswith(KEPT_SUFFIXES)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--moec", required=True)
    p.add_argument("--model", required=True, help="an F16 GGUF")
    p.add_argument("--workdir", required=True)
    a = p.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    ok = True

    def uniform(fmt):
        return lambda name, s: s.tensor_type if kept(name) else fmt

    for fmt in ("q8_0", "q6_k", "q5_k", "q4_k", "q3_k", "q2_k", "q4_0",
                "q4_1", "q5_0", "q5_1", "mxfp4"):
        ok &= check_case(a, fmt, [f"--quantize={fmt}"],
                         uniform(T[fmt.upper()]))

    # Class flags over --quantize; embedding and output kept as F16.
    def classes(name, s):
        if kept(name):
            return s.tensor_type
        if "_exps." in name:
            return T.Q4_K
        if name == "token_embd.weight":
            return T.Q8_0
        return T.Q6_K
    ok &= check_case(a, "classes", ["--quantize=q6_k", "--quantize-experts=q4_k",
                                    "--quantize-embedding=q8_0"], classes)

    # --formats-from: each tensor takes the type it has in another GGUF
    # (here the "classes" output), over --quantize.
    ok &= check_case(a, "formats-from",
                     ["--quantize=q2_k", "--formats-from=" +
                      os.path.join(a.workdir, "classes.gguf")], classes)

    # Refusals, one line each, nonzero exit.
    q4 = os.path.join(a.workdir, "q4_k.gguf")
    for args, message in [
        ([q4, "--quantize=q8_0", "--emit=gguf", "-o",
          os.path.join(a.workdir, "re.gguf")], "--allow-requantize"),
        ([a.model, "--quantize=q9_9", "--emit=gguf", "-o",
          os.path.join(a.workdir, "x.gguf")], "unknown format 'q9_9'"),
        ([a.model, "--quantize=iq2_xxs", "--emit=gguf", "-o",
          os.path.join(a.workdir, "x.gguf")], "unknown format 'iq2_xxs'"),
        ([a.model, "--quantize=q4_k", "--emit=gguf"], "-o: the output file"),
        ([a.model, "--emit=elf", "-o", "x"], "--emit: expected bundle, gguf"),
        ([a.model, "--quantize=int4_g32", "--emit=gguf", "-o",
          os.path.join(a.workdir, "x.gguf")], "llama.cpp cannot read"),
        ([a.model, "--rounding=cubic", "--emit=gguf", "-o", "x"],
         "--rounding: expected"),
    ]:
        r = run([a.moec] + args, expect_ok=False)
        lines = r.stderr.strip().splitlines()
        if r.returncode == 0 or message not in r.stderr or len(lines) != 1:
            print(f"  FAIL refusal {args[1:]}: rc {r.returncode}, "
                  f"stderr {r.stderr!r}")
            ok = False
        else:
            print(f"refused as expected: {lines[0]}")

    # Asked for, re-quantization works and says so.
    r = run([a.moec, q4, "--quantize=q8_0", "--allow-requantize", "--quiet",
             "--emit=gguf", "-o", os.path.join(a.workdir, "re.gguf")])
    if "re-quantizing" not in r.stderr:
        print(f"  FAIL --allow-requantize gave no warning: {r.stderr!r}")
        ok = False
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
