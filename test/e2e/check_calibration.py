#!/usr/bin/env python3
"""`moec calibrate` against the reference executor.

Calibrates a model on a text (`moec calibrate MODEL -f TEXT -c N --chunks C
-o calib.dat`: the model compiled with instrumentation, run over the text's
perplexity windows), then runs the reference executor (moec-reference
--calibration-out) on the same windows (the text's ids from `moec tokenize
--bos`, each window's first token replaced by BOS, each from an empty
context) and compares the two files, parsed here from the documented layout
(runtime/exec/Calibration.h), not by moec's reader:

  * the same tensors, shapes and per-expert row counts, exactly (the
    compiled code routes like the reference on these windows, or the
    routing counts differ and the test says where);
  * per-column mean squared inputs within --tolerance relative to the
    tensor's largest;
  * routing counts exactly; router-weight mass and REAP sums within
    --tolerance relative;
  * every projection of the model appears (attention, router, experts,
    shared expert, output).

Then the file is used: `moec MODEL --quantize... --rounding=importance
--calibration=calib.dat` compiles, and a damaged calib.dat is refused with
one line.
"""

import argparse
import json
import os
import struct
import subprocess
import sys

import numpy as np


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"FAILED ({r.returncode}): {' '.join(cmd)}\n{r.stdout}\n"
                 f"{r.stderr}")
    return r


def read_calibration(path):
    data = open(path, "rb").read()
    if data[:8] != b"MOECCAL1":
        sys.exit(f"{path}: bad magic {data[:8]!r}")
    (size,) = struct.unpack_from("<Q", data, 8)
    header = json.loads(data[16:16 + size].decode())
    start = (16 + size + 7) // 8 * 8
    tensors = {}
    for t in header["tensors"]:
        n = t["experts"] * t["columns"]
        values = np.frombuffer(data, dtype="<f4", count=n,
                               offset=start + t["offset"])
        tensors[t["name"]] = (t["rows"], values.reshape(t["experts"],
                                                        t["columns"]))
    return header, tensors


def read_hessians(path):
    data = open(path, "rb").read()
    if data[:8] != b"MOECHES1":
        sys.exit(f"{path}: bad magic {data[:8]!r}")
    (size,) = struct.unpack_from("<Q", data, 8)
    header = json.loads(data[16:16 + size].decode())
    start = (16 + size + 7) // 8 * 8
    out = {}
    for t in header["tensors"]:
        n = t["experts"] * t["columns"] * t["columns"]
        values = np.frombuffer(data, dtype="<f8", count=n,
                               offset=start + t["offset"])
        out[t["name"]] = (t["rows"], values.reshape(t["experts"], t["columns"],
                                                    t["columns"]))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--moec", required=True)
    p.add_argument("--reference", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--text", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--context", type=int, default=64)
    p.add_argument("--chunks", type=int, default=3)
    p.add_argument("--tolerance", type=float, default=2e-3)
    a = p.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    calib = os.path.join(a.workdir, "calib.dat")
    oracle = os.path.join(a.workdir, "reference.dat")

    r = run([a.moec, "calibrate", a.model, "-f", a.text, "-o", calib,
             "-c", str(a.context), "--chunks", str(a.chunks), "-t", "2"])
    text = open(a.text, "rb").read()
    ids = [int(t) for t in run([a.moec, "tokenize", "--model", a.model,
                                "--bos"], input=text.decode()).stdout.split()]
    bos = ids[0]
    windows = []
    for c in range(min(a.chunks, len(ids) // a.context)):
        w = ids[c * a.context:(c + 1) * a.context]
        w[0] = bos
        windows.append(",".join(map(str, w)))
    run([a.reference, a.model, "--tokens", ";".join(windows),
         "--calibration-out", oracle, "-o", os.devnull])

    got_header, got = read_calibration(calib)
    ref_header, ref = read_calibration(oracle)
    failures = []
    if got_header["tokens"] != ref_header["tokens"]:
        failures.append(f"tokens {got_header['tokens']} vs reference "
                        f"{ref_header['tokens']}")
    if set(got) != set(ref):
        failures.append(f"tensors differ: only compiled "
                        f"{sorted(set(got) - set(ref))}, only reference "
                        f"{sorted(set(ref) - set(got))}")
    worst = 0.0
    for name in sorted(set(got) & set(ref)):
        (grows, g), (rrows, rv) = got[name], ref[name]
        if grows != rrows or g.shape != rv.shape:
            failures.append(f"{name}: rows {grows} vs reference {rrows}")
            continue
        scale = max(float(np.abs(rv).max()), 1e-30)
        err = float(np.abs(g.astype(np.float64) - rv).max()) / scale
        worst = max(worst, err)
        if not err <= a.tolerance:
            failures.append(f"{name}: mean squares differ by {err:.3g} of "
                            f"the largest")
    if got_header["routing"]["counts"] != ref_header["routing"]["counts"]:
        failures.append("routing counts differ")
    for gl, rl in zip(got_header["experts"], ref_header["experts"]):
        if gl["tokens"] != rl["tokens"]:
            failures.append(f"layer {gl['layer']}: expert tokens differ")
        for key in ("weight_mass", "reap"):
            gv, rv = np.array(gl[key]), np.array(rl[key])
            err = float(np.abs(gv - rv).max()) / max(float(np.abs(rv).max()),
                                                     1e-30)
            worst = max(worst, err)
            if not err <= a.tolerance:
                failures.append(f"layer {gl['layer']} {key}: differs by "
                                f"{err:.3g} relative")
    roles = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate_inp",
             "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps")
    for role in roles:
        if not any(f".{role}." in name for name in got):
            failures.append(f"no {role} tensor was observed")
    if not any(n in got for n in ("output.weight", "token_embd.weight")):
        failures.append("the output projection was not observed")
    print(f"calibration: {got_header['tokens']} tokens, {len(got)} tensors; "
          f"worst relative difference from the reference {worst:.3g} "
          f"(tolerance {a.tolerance:g})")

    # GPTQ's Hessians of layer 1: the compiled instrumented model (what
    # --rounding=gptq runs) against the reference on the same windows.
    out_dir = os.path.join(a.workdir, "instrumented")
    run([a.moec, a.model, "--instrument", "--quiet", "-o", out_dir])
    got_h = os.path.join(a.workdir, "hessians.bin")
    ref_h = os.path.join(a.workdir, "hessians-reference.bin")
    run([os.path.join(out_dir, "model-run"), "--perplexity", "-f", a.text,
         "-c", str(a.context), "--chunks", str(a.chunks), "-t", "2",
         "--hessian-layer", "1", "--hessian-out", got_h])
    run([a.reference, a.model, "--tokens", ";".join(windows),
         "--hessian-layer", "1", "--hessian-out", ref_h, "-o", os.devnull])
    gh, rh = read_hessians(got_h), read_hessians(ref_h)
    if set(gh) != set(rh) or not gh:
        failures.append(f"Hessians of {sorted(gh)} vs reference {sorted(rh)}")
    worst_h = 0.0
    for name in sorted(set(gh) & set(rh)):
        (grows, g), (rrows, r) = gh[name], rh[name]
        if grows != rrows:
            failures.append(f"{name}: Hessian rows {grows} vs {rrows}")
            continue
        err = float(np.abs(g - r).max()) / max(float(np.abs(r).max()), 1e-30)
        worst_h = max(worst_h, err)
        if not err <= a.tolerance:
            failures.append(f"{name}: Hessians differ by {err:.3g}")
        # The diagonal over the rows is calib.dat's mean square.
        rows, ms = got[name]
        for e, n in enumerate(grows):
            if n and not np.allclose(np.diag(g[e]) / n, ms[e], rtol=1e-5,
                                     atol=1e-12):
                failures.append(f"{name} expert {e}: diag(H)/rows is not "
                                f"calib.dat's mean square")
                break
    print(f"Hessians of layer 1: {len(gh)} weights, worst relative "
          f"difference from the reference {worst_h:.3g}")

    # The file in use: importance-weighted compression compiles, GPTQ too.
    run([a.moec, a.model, "--quantize-experts=int3_g64", "--rounding=gptq",
         f"--calibration={calib}", "--quiet", "--emit=moec-gguf", "-o",
         os.path.join(a.workdir, "gptq.gguf")])
    out = os.path.join(a.workdir, "q3k.gguf")
    r = run([a.moec, a.model, "--quantize=q3_k", "--rounding=importance",
             f"--calibration={calib}", "--quiet", "--emit=gguf", "-o", out])
    # Damaged files are refused, one line each.
    data = open(calib, "rb").read()
    for name, damaged in [("truncated", data[:len(data) // 2]),
                          ("magic", b"XOECCAL1" + data[8:])]:
        bad = os.path.join(a.workdir, f"bad-{name}.dat")
        open(bad, "wb").write(damaged)
        r = subprocess.run([a.moec, a.model, "--quantize=q4_k",
                            "--rounding=importance", f"--calibration={bad}",
                            "--quiet", "--emit=gguf", "-o", out],
                           capture_output=True, text=True)
        lines = r.stderr.strip().splitlines()
        if r.returncode == 0 or len(lines) != 1:
            failures.append(f"{name} calib.dat: rc {r.returncode}, "
                            f"{r.stderr!r}")
        else:
            print(f"refused ({name}): {lines[0]}")
    for f in failures[:30]:
        print("FAIL " + f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
