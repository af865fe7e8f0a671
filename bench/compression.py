#!/usr/bin/env python3
"""Compression quality: what each compressor keeps at its size.

Every model in the table is compiled and evaluated by moec on the same
held-out text (llama.cpp's perplexity protocol, `model-run --perplexity`),
against the F16 model's log-probabilities (`--kl-divergence-base`): weight
bytes, bits per routed-expert weight, perplexity, mean / p99 KL divergence
and same-top-1.

Rows:
  * uniform formats (every matrix) rounded to nearest and importance-
    weighted with a calib.dat from the calibration text (never the
    evaluation text); moec's own int4/int3/int2 also with GPTQ;
  * llama.cpp's presets made from the same F16 GGUF by llama_model_quantize
    through llama-cpp-python (no importance matrix: that binding cannot pass
    one), compiled by moec;
  * moec with each preset's per-tensor formats but importance-weighted
    rounding (--formats-from: the rounding's gain alone);
  * moec's budgeted mix at each preset's weight bytes (--size-budget: the
    allocator's gain), chosen per expert (the default for moec's own
    bundle: a layer's experts may differ) and per tensor (what GGUF
    expresses, so what --emit=gguf writes);
  * the budgeted mix at 3.0 and 2.5 bits per routed-expert weight
    (attention, embedding at Q6_K);
  * 25% of experts pruned (REAP and frequency), alone and with Q4_K
    (importance) in each order: prune first, quantize first
    (--prune-order=...), and moec's own choice (--prune-order=auto, the
    default: both built, the lower KL on held-aside calibration windows
    kept; the row names the order chosen, from `moec inspect`).

Prints a markdown table and writes JSON (--json). Run by hand:

  python bench/compression.py --moec build/bin/moec \\
      --model examples/model/moe-example-f16.gguf \\
      --calibration-text train.txt --eval-text heldout.txt \\
      --llama-python /path/to/venv-with-llama-cpp-python/bin/python
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

PRESETS = [("Q2_K", 10), ("Q3_K_M", 12), ("Q4_K_M", 15), ("Q5_K_M", 17),
           ("Q6_K", 18)]
UNIFORM = ["q8_0", "q6_k", "q5_k", "q4_k", "q3_k", "q2_k"]


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"FAILED ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-3000:]}")
    return r


class Bench:
    def __init__(self, a):
        self.a = a
        self.rows = []
        self.base = os.path.join(a.workdir, "base.kld")

    def ppl_args(self):
        args = ["--perplexity", "-f", self.a.eval_text, "-c",
                str(self.a.context), "-t", str(self.a.threads)]
        if self.a.chunks:
            args += ["--chunks", str(self.a.chunks)]
        return args

    def compile(self, name, model, flags):
        out = os.path.join(self.a.workdir, re.sub(r"[^A-Za-z0-9_.]+", "-", name))
        t = time.time()
        run([self.a.moec, model, "--quiet", "--activations=f32", "-o", out] +
            flags)
        return out, time.time() - t

    def inspect(self, bundle):
        """Weight bytes, bits per routed-expert weight and the order of
        pruning and quantization (None without one) `moec inspect` shows."""
        text = run([self.a.moec, "inspect", bundle]).stdout
        total = int(re.search(r"^weights: (\d+) bytes", text, re.M).group(1))
        bits = float(re.search(r"routed experts \d+ bytes, ([0-9.]+) bits",
                               text).group(1))
        order = re.search(r"^compression order: (\w+)(.*)$", text, re.M)
        return total, bits, order and {"chosen": order.group(1),
                                       "detail": order.group(2).strip()}

    def evaluate(self, name, group, model, flags, note="", name_order=False):
        out, seconds = self.compile(name, model, flags)
        total, bits, order = self.inspect(os.path.join(out, "model.moeb"))
        if name_order:
            name += f": {order['chosen'] if order else '?'}"
        r = run([os.path.join(out, "model-run")] + self.ppl_args() +
                ["--kl-divergence-base", self.base, "--kl-divergence"])
        line = next(l for l in r.stdout.splitlines()
                    if l.startswith("kl-divergence:"))
        figures = dict(kv.split("=") for kv in line.split()[1:])
        row = {"name": name, "group": group, "weight_bytes": total,
               "expert_bits": bits, "ppl": float(figures["ppl"]),
               "kl_mean": float(figures["mean"]),
               "kl_p99": float(figures["p99"]),
               "same_top1": float(figures["same-top1"]),
               "ln_ppl_ratio": float(figures["ln-ppl-ratio"]),
               "ln_ppl_ratio_unc": float(figures["ln-ppl-ratio-unc"]),
               "compile_s": round(seconds, 1), "flags": " ".join(flags),
               "note": note}
        if order:
            row["order"] = order
        self.rows.append(row)
        print(f"{name:34s} {total:>10d} B {bits:6.3f} b  PPL {row['ppl']:9.4f}"
              f"  KL {row['kl_mean']:.5f}  p99 {row['kl_p99']:.4f}  top1 "
              f"{row['same_top1']:.4f}", flush=True)
        return row


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--moec", required=True)
    p.add_argument("--model", required=True, help="the F16 GGUF")
    p.add_argument("--calibration-text", required=True)
    p.add_argument("--eval-text", required=True)
    p.add_argument("--llama-python",
                   help="a python with llama-cpp-python (presets); rows "
                        "that need it are skipped without")
    p.add_argument("--workdir", default="/var/tmp/moec-compression-bench")
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--chunks", type=int, default=0,
                   help="evaluate at most this many windows (0: all)")
    p.add_argument("--calibration-chunks", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="write the rows here")
    p.add_argument("--groups", default="presets,bits,own,prune,uniform",
                   help="which rows to run (comma-separated; F16 always)")
    a = p.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    b = Bench(a)

    # The F16 model: base log-probabilities.
    out, _ = b.compile("f16", a.model, [])
    run([os.path.join(out, "model-run")] + b.ppl_args() +
        ["--kl-divergence-base", b.base])
    b.evaluate("F16", "reference", a.model, [])

    calib = os.path.join(a.workdir, "calib.dat")
    run([a.moec, "calibrate", a.model, "-f", a.calibration_text, "-o", calib,
         "-c", str(a.context), "--chunks", str(a.calibration_chunks), "-t",
         str(a.threads)])
    importance = ["--rounding=importance", f"--calibration={calib}"]

    presets = {}
    groups = set(a.groups.split(","))
    if a.llama_python and "presets" in groups:
        script = (
            "import ctypes, sys, llama_cpp\n"
            "p = llama_cpp.llama_model_quantize_default_params()\n"
            "p.ftype = int(sys.argv[3]); p.nthread = 2\n"
            "sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), "
            "sys.argv[2].encode(), ctypes.byref(p)))\n")
        for name, ftype in PRESETS:
            path = os.path.join(a.workdir, f"llama-{name}.gguf")
            run([a.llama_python, "-c", script, a.model, path, str(ftype)])
            presets[name] = path
            row = b.evaluate(f"llama.cpp {name}", "preset", path, [],
                             "llama_model_quantize, no imatrix")
            b.evaluate(f"moec {name} formats, importance", "preset-formats",
                       a.model, [f"--formats-from={path}"] + importance)
            b.evaluate(f"moec mix at {name} bytes", "budget", a.model,
                       [f"--size-budget={row['weight_bytes']}"] + importance,
                       "per-expert allocation (moec's own bundle)")
            b.evaluate(f"moec mix at {name} bytes, per tensor", "budget",
                       a.model,
                       [f"--size-budget={row['weight_bytes']}",
                        "--allocate-per=tensor"] + importance,
                       "per-tensor allocation = the --emit=gguf allocation")
    # Below Q2_K's 2.625 bits only moec's own int2 formats reach.
    for bits in ("3.0", "2.5") if "bits" in groups else ():
        b.evaluate(f"moec mix {bits} bits/expert weight", "budget", a.model,
                   [f"--bits-per-weight={bits}", "--quantize-attention=q6_k",
                    "--quantize-embedding=q6_k", "--quantize-output=q6_k",
                    "--formats=int2_g64,int3_g64,q2_k,q3_k,q4_k,q5_k,q6_k,"
                    "q8_0"] + importance)
    for fmt in ("int4_g32", "int3_g32", "int2_g32_asym") if "own" in groups \
            else ():
        b.evaluate(f"own {fmt} nearest", "own", a.model,
                   [f"--quantize={fmt}"])
        b.evaluate(f"own {fmt} importance", "own", a.model,
                   [f"--quantize={fmt}"] + importance)
        b.evaluate(f"own {fmt} gptq", "own", a.model,
                   [f"--quantize={fmt}", "--rounding=gptq",
                    f"--calibration={calib}"])

    for scoring in ("reap", "frequency") if "prune" in groups else ():
        prune = [f"--prune-experts=0.25", f"--prune-scoring={scoring}",
                 f"--calibration={calib}"]
        b.evaluate(f"prune 25% {scoring} (F16)", "prune", a.model, prune)
        quantize = prune + ["--quantize=q4_k", "--rounding=importance"]
        for order, note in (
                ("prune-first", "pruned by calib.dat, the pruned model "
                                "calibrated again, then quantized"),
                ("quantize-first", "quantized by calib.dat, the quantized "
                                   "model calibrated again, then pruned")):
            b.evaluate(f"prune 25% {scoring} + q4_k, {order}", "prune",
                       a.model, quantize + [f"--prune-order={order}"], note)
        # The default: both orders built, the lower KL divergence on the
        # calibration text's last windows (held aside) kept.
        b.evaluate(f"prune 25% {scoring} + q4_k, auto", "prune", a.model,
                   quantize, "--prune-order=auto", name_order=True)

    for fmt in UNIFORM if "uniform" in groups else ():
        b.evaluate(f"uniform {fmt} nearest", "uniform", a.model,
                   [f"--quantize={fmt}"])
        b.evaluate(f"uniform {fmt} importance", "uniform", a.model,
                   [f"--quantize={fmt}"] + importance)

    print()
    print("| model | weight bytes | bits/expert weight | PPL | "
          "ln(PPL/PPL(F16)) | mean KL | KL p99 | same top-1 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in b.rows:
        print(f"| {r['name']} | {r['weight_bytes']:,} | {r['expert_bits']:.3f} "
              f"| {r['ppl']:.4f} | {r['ln_ppl_ratio']:+.5f} ± "
              f"{r['ln_ppl_ratio_unc']:.5f} | {r['kl_mean']:.5f} | "
              f"{r['kl_p99']:.4f} | {r['same_top1']:.4f} |")
    # The target: the budgeted mix beats each preset at its bytes.
    verdicts = []
    for name, _ in PRESETS:
        preset = next((r for r in b.rows if r["name"] == f"llama.cpp {name}"),
                      None)
        mix = next((r for r in b.rows if r["name"] == f"moec mix at {name} bytes"),
                   None)
        if preset and mix:
            ok = mix["kl_mean"] < preset["kl_mean"] and mix["ppl"] < preset["ppl"]
            # Whether the perplexities differ by more than the evaluation
            # resolves: each is measured against F16 on the same positions,
            # and the two uncertainties combined bound their difference's
            # (the two differences correlate positively, so this is wide).
            gap = mix["ln_ppl_ratio"] - preset["ln_ppl_ratio"]
            unc = (mix["ln_ppl_ratio_unc"] ** 2 +
                   preset["ln_ppl_ratio_unc"] ** 2) ** 0.5
            verdicts.append({"preset": name, "mix_bytes": mix["weight_bytes"],
                             "preset_bytes": preset["weight_bytes"],
                             "kl": [mix["kl_mean"], preset["kl_mean"]],
                             "ppl": [mix["ppl"], preset["ppl"]],
                             "ln_ppl_gap": gap, "ln_ppl_gap_unc": unc,
                             "mix_better": ok})
            print(f"at {name}'s {preset['weight_bytes']:,} bytes: mix KL "
                  f"{mix['kl_mean']:.5f} vs {preset['kl_mean']:.5f}, PPL "
                  f"{mix['ppl']:.4f} vs {preset['ppl']:.4f} (ln ratio "
                  f"{gap:+.5f} ± {unc:.5f}): "
                  f"{'better' if ok else 'NOT better'}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": a.model, "context": a.context,
                       "chunks": a.chunks, "rows": b.rows,
                       "target": verdicts}, f, indent=1)


if __name__ == "__main__":
    main()
