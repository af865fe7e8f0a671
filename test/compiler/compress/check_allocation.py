#!/usr/bin/env python3
"""Formats under a size budget (moec --size-budget / --bits-per-weight).

On a model with trained weights:

  * --size-budget=S, choosing per tensor and per expert (--allocate-per):
    the bundle's weights (what `moec inspect` reports) never exceed S and
    equal the compression record's weight_bytes; every allocated format is
    on the menu; gate and up of a layer (of an expert) share one; a larger
    budget never predicts a larger error; per tensor no layer's experts
    differ, per expert some do, and the per-expert choice predicts no more
    error than the per-tensor one at the same budget beyond its own gap
    bound (the per-tensor choice is one of its candidates);
  * --bits-per-weight=B: the routed experts take at most B bits per weight;
  * --emit=gguf with a budget: the GGUF's tensor bytes (the gguf package's
    reading) stay within the budget and are what the bundle holds;
  * refusals: a budget below the smallest menu choice, both budgets, an
    unknown menu format, a menu format moec does not quantize, per-expert
    formats for llama.cpp's GGUF.
"""

import argparse
import json
import os
import re
import subprocess
import sys

import gguf


def run(cmd, ok=True):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if ok and r.returncode != 0:
        sys.exit(f"FAILED ({r.returncode}): {' '.join(cmd)}\n{r.stderr}")
    return r


def inspect(moec, bundle):
    text = run([moec, "inspect", bundle]).stdout
    weights = int(re.search(r"^weights: (\d+) bytes", text, re.M).group(1))
    bits = float(re.search(r"routed experts \d+ bytes, ([0-9.]+) bits",
                           text).group(1))
    record = json.loads(re.search(r"^compression (\{.*\})$", text,
                                  re.M).group(1))
    layers = re.findall(r"^  layer (\d+) +[0-9.]+ bits  (.*)$", text, re.M)
    return weights, bits, record, layers


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--moec", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--workdir", required=True)
    a = p.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    failures = []
    menu = "q2_k,q4_k,q8_0"
    # The model's weights at F16 are ~44 MB; the menu spans ~13-24 MB.
    records = {}
    for per in ("tensor", "expert"):
        errors = []
        mixed_layers = 0
        for budget in (14_000_000, 18_000_000):
            out = os.path.join(a.workdir, f"size-{budget}-{per}")
            run([a.moec, a.model, f"--size-budget={budget}",
                 f"--formats={menu}", f"--allocate-per={per}", "--quiet",
                 "-o", out])
            weights, _, record, layers = inspect(
                a.moec, os.path.join(out, "model.moeb"))
            records[(per, budget)] = record
            print(f"--size-budget={budget} --allocate-per={per}: weights "
                  f"{weights} bytes, predicted error "
                  f"{record['predicted_error']:.4g} (gap bound "
                  f"{record['gap_bound']:.3g})")
            if weights > budget:
                failures.append(f"budget {budget} per {per}: weights take "
                                f"{weights} bytes")
            if weights != record["weight_bytes"]:
                failures.append(f"budget {budget} per {per}: inspect says "
                                f"{weights}, the record "
                                f"{record['weight_bytes']}")
            for layer, formats in layers:
                if formats.startswith("mixed"):
                    mixed_layers += 1
                    if per == "tensor":
                        failures.append(f"layer {layer}: experts mixed "
                                        f"({formats}); this allocation is "
                                        f"per tensor")
                        continue
                    triples = [x.split("=")[1].split("/")
                               for x in formats.split()[1:]]
                else:
                    triples = [formats.split()[-1].split("/")]
                for gate, up, down in triples:
                    if gate != up:
                        failures.append(f"layer {layer}: gate {gate} != up "
                                        f"{up}")
                    for f in (gate, up, down):
                        if f.lower() not in menu.split(","):
                            failures.append(f"layer {layer}: {f} is not on "
                                            f"the menu")
            errors.append(record["predicted_error"])
        if not errors[1] <= errors[0]:
            failures.append(f"per {per}: a larger budget predicts a larger "
                            f"error: {errors}")
        if per == "expert" and mixed_layers == 0:
            failures.append("per expert, no layer's experts differ")
    for budget in (14_000_000, 18_000_000):
        t, e = records[("tensor", budget)], records[("expert", budget)]
        if e["predicted_error"] > t["predicted_error"] + e["gap_bound"]:
            failures.append(f"budget {budget}: per expert predicts "
                            f"{e['predicted_error']:.6g}, more than per "
                            f"tensor's {t['predicted_error']:.6g} plus its "
                            f"gap bound {e['gap_bound']:.3g}")

    out = os.path.join(a.workdir, "bpw")
    run([a.moec, a.model, "--bits-per-weight=3.0", "--formats=q2_k,q3_k,q4_k",
         "--quantize-attention=q8_0", "--quiet", "-o", out])
    _, bits, record, _ = inspect(a.moec, os.path.join(out, "model.moeb"))
    print(f"--bits-per-weight=3.0: routed experts at {bits:.3f} bits")
    if bits > 3.0:
        failures.append(f"--bits-per-weight=3.0 gave {bits} bits")

    path = os.path.join(a.workdir, "budget.gguf")
    run([a.moec, a.model, "--size-budget=16000000", f"--formats={menu}",
         "--quiet", "--emit=gguf", "-o", path])
    total = sum(int(t.n_bytes) for t in gguf.GGUFReader(path).tensors)
    print(f"--emit=gguf --size-budget=16000000: tensors {total} bytes")
    if total > 16_000_000:
        failures.append(f"the GGUF's tensors take {total} bytes")
    out = os.path.join(a.workdir, "from-gguf")
    run([a.moec, path, "--quiet", "-o", out])
    weights, _, _, _ = inspect_plain(a.moec, os.path.join(out, "model.moeb"))
    if weights != total:
        failures.append(f"the GGUF holds {total} bytes, its bundle {weights}")

    for args, message in [
        (["--size-budget=1000000"], "below the smallest"),
        (["--size-budget=20M", "--bits-per-weight=3"], "give one budget"),
        (["--bits-per-weight=3", "--formats=q4_k,q9_k"], "unknown format"),
        (["--bits-per-weight=3", "--formats=q4_k,iq2_xxs"], "unknown format"),
        (["--bits-per-weight=40"], "must be in (0, 32]"),
        (["--bits-per-weight=3", "--allocate-per=expert"],
         "which a GGUF tensor cannot hold"),
        (["--bits-per-weight=3", "--allocate-per=layer"],
         "expected expert, tensor or auto"),
    ]:
        r = run([a.moec, a.model, "--quiet", "--emit=gguf", "-o",
                 os.path.join(a.workdir, "x.gguf")] + args, ok=False)
        lines = r.stderr.strip().splitlines()
        if r.returncode == 0 or message not in r.stderr or len(lines) != 1:
            failures.append(f"{args}: rc {r.returncode}, {r.stderr!r}")
        else:
            print(f"refused: {lines[0]}")
    for f in failures:
        print("FAIL " + f)
    sys.exit(1 if failures else 0)


def inspect_plain(moec, bundle):
    text = run([moec, "inspect", bundle]).stdout
    weights = int(re.search(r"^weights: (\d+) bytes", text, re.M).group(1))
    return weights, None, None, None


if __name__ == "__main__":
    main()
