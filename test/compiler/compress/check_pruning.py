#!/usr/bin/env python3
"""Expert pruning (moec --prune-experts) against calib.dat and the gguf
package.

Calibrates the model (moec calibrate), then prunes 25% of every layer's
routed experts by REAP and by frequency, and checks with the gguf package:

  * the experts removed are the lowest-scoring ones as computed here from
    calib.dat's documented layout (REAP: reap / tokens; frequency: tokens);
    moec.pruning.kept_experts lists the survivors;
  * expert_count is the survivors' count, expert_used_count unchanged (k
    is below it);
  * the router keeps exactly the survivors' rows and the expert tensors
    exactly their slices, byte for byte; every other tensor is unchanged;
  * the pruned model compiled for the host (moec --prune-experts -o out)
    gives the reference executor's logits on the pruned GGUF (relative
    1e-3), and routes only to experts that exist (--stats counts);
  * refusals: no calibration, a fraction outside (0, 1), pruning nothing.
"""

import argparse
import json
import os
import random
import struct
import subprocess
import sys

import numpy as np
import gguf


def run(cmd, ok=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if ok and r.returncode != 0:
        sys.exit(f"FAILED ({r.returncode}): {' '.join(cmd)}\n{r.stderr}")
    return r


def calibration_layers(path):
    data = open(path, "rb").read()
    (size,) = struct.unpack_from("<Q", data, 8)
    return json.loads(data[16:16 + size])["experts"]


def field(reader, key):
    f = reader.fields[key]
    return [int(f.parts[i][0]) for i in f.data]


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--moec", required=True)
    p.add_argument("--reference", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--text", required=True)
    p.add_argument("--workdir", required=True)
    a = p.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    calib = os.path.join(a.workdir, "calib.dat")
    run([a.moec, "calibrate", a.model, "-f", a.text, "-o", calib, "-c", "64",
         "--chunks", "4", "-t", "2"])
    layers = calibration_layers(calib)
    src = gguf.GGUFReader(a.model)
    arch = bytes(src.fields["general.architecture"].parts[-1]).decode()
    experts = field(src, f"{arch}.expert_count")[0]
    used = field(src, f"{arch}.expert_used_count")[0]
    src_tensors = {t.name: t for t in src.tensors}
    failures = []

    for scoring in ("reap", "frequency"):
        path = os.path.join(a.workdir, f"pruned-{scoring}.gguf")
        run([a.moec, a.model, "--prune-experts=0.25",
             f"--prune-scoring={scoring}", f"--calibration={calib}",
             "--quiet", "--emit=gguf", "-o", path])
        out = gguf.GGUFReader(path)
        prune = int(0.25 * experts)
        expected = []
        for layer in layers:
            tokens = layer["tokens"]
            score = [t for t in tokens] if scoring == "frequency" else \
                [layer["reap"][e] / tokens[e] if tokens[e] else 0.0
                 for e in range(experts)]
            order = sorted(range(experts), key=lambda e: (score[e], -e))
            expected.append(sorted(order[prune:]))
        kept = field(out, "moec.pruning.kept_experts")
        per = experts - prune
        got = [kept[i * per:(i + 1) * per] for i in range(len(layers))]
        if got != expected:
            failures.append(f"{scoring}: kept {got}, expected {expected}")
        if field(out, f"{arch}.expert_count")[0] != per:
            failures.append(f"{scoring}: expert_count "
                            f"{field(out, f'{arch}.expert_count')}")
        if field(out, f"{arch}.expert_used_count")[0] != min(used, per):
            failures.append(f"{scoring}: expert_used_count changed")
        for t in out.tensors:
            s = src_tensors[t.name]
            sdata = np.asarray(s.data)
            tdata = np.asarray(t.data)
            if "_exps." in t.name or "ffn_gate_inp" in t.name:
                layer = int(t.name.split(".")[1])
                want = sdata[expected[layer]]
            else:
                want = sdata
            if want.shape != tdata.shape or not np.array_equal(want, tdata):
                failures.append(f"{scoring}: {t.name} is not the survivors' "
                                f"data")
        print(f"{scoring}: kept {per} of {experts} experts per layer, e.g. "
              f"layer 0 {got[0]}")

    # The compiled pruned model against the reference on the pruned GGUF.
    out_dir = os.path.join(a.workdir, "out")
    run([a.moec, a.model, "--prune-experts=0.25", f"--calibration={calib}",
         "--activations=f32", "--quiet", "-o", out_dir])
    reference_model = os.path.join(a.workdir, "pruned-reap.gguf")
    rng = random.Random(1)
    prompt = [rng.randrange(8000) for _ in range(24)]
    logits = os.path.join(a.workdir, "compiled.f32")
    stats = os.path.join(a.workdir, "stats.json")
    run([os.path.join(out_dir, "model-run"), "--prompt-ids",
         ",".join(map(str, prompt)), "-n", "1", "-t", "2", "--logits-out",
         logits, "--stats", stats])
    ref = os.path.join(a.workdir, "reference.f32")
    run([a.reference, reference_model, "--tokens", ",".join(map(str, prompt)),
         "-o", ref])
    got = np.fromfile(logits, dtype=np.float32).reshape(len(prompt), -1)
    want = np.fromfile(ref, dtype=np.float32).reshape(len(prompt), -1)
    err = float((np.abs(got - want).max(axis=1) /
                 np.abs(want).max(axis=1)).max())
    counts = json.load(open(stats))["routing"]["counts"]
    print(f"compiled pruned model: worst relative logit error {err:.3g}; "
          f"routing over {len(counts[0])} experts per layer")
    if not err <= 1e-3:
        failures.append(f"compiled pruned model: logit error {err}")
    if any(len(c) != experts - int(0.25 * experts) for c in counts):
        failures.append(f"routing counts cover {len(counts[0])} experts")

    for args, message in [
        (["--prune-experts=0.25"], "needs --calibration"),
        (["--prune-experts=1.5", f"--calibration={calib}"], "(0, 1)"),
        (["--prune-experts=0.01", f"--calibration={calib}"], "prunes none"),
        (["--prune-experts=0.25", "--prune-scoring=magic",
          f"--calibration={calib}"], "--prune-scoring"),
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


if __name__ == "__main__":
    main()
