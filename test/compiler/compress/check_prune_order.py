#!/usr/bin/env python3
"""Pruning and quantization in both orders (moec --prune-experts with
quantization, --prune-order).

  --step calibrate: moec calibrate on the first 4 windows of 64 tokens of
    the text (the rest is left for the order search to hold aside).

  --step auto: moec --prune-experts=0.25 --quantize-experts=q3_k
    --rounding=importance --order-eval-chunks=2 (both orders built and
    measured) into a bundle, and checks:
      * the compression record (moec inspect) names both orders with their
        KL figures, the same as the progress lines print, and keeps the
        one with the lower mean KL; inspect's "compression order" line;
      * the held-aside slice is the text's end, past the 4 calibration
        windows, and holds the 2 windows;
      * the chosen figure is real: the compiled model's logits
        (--prompt-ids) on the held-aside windows against the reference
        executor's on the original model, KL computed here in numpy;
      * the compiled model routes only over the 12 kept experts.

  --step prune-first, --step quantize-first: that order alone
    (--prune-order, the search's flags, --emit=moec-gguf), and checks:
      * its KL (the reference executor on its GGUF against the original on
        the held-aside windows, in numpy) is the figure the search recorded
        for that order; the chosen order's kept experts are the search's;
      * prune-first keeps the lowest-REAP experts of calib.dat, and its
        quantized expert slices are nearest to those experts' originals;
      * quantize-first keeps the lowest-REAP experts of a calibration of
        the quantized model (quantized and calibrated here with moec), and
        its expert slices are that model's, byte for byte; refusals: an
        unknown order, --prune-order without pruning, a slice larger than
        the text.
"""

import argparse
import json
import os
import re
import sys

import numpy as np
import gguf

from check_pruning import calibration_layers, field, run

CONTEXT = 64
CALIBRATION_WINDOWS = 4
EVAL_WINDOWS = 2
FRACTION = 0.25
QUANTIZE = ["--quantize-experts=q3_k", "--rounding=importance"]


def lowest_reap_kept(path, experts):
    """Per layer, the survivors by REAP (reap / tokens, ties keep the lower
    ids), as documented."""
    prune = int(FRACTION * experts)
    kept = []
    for layer in calibration_layers(path):
        tokens = layer["tokens"]
        score = [layer["reap"][e] / tokens[e] if tokens[e] else 0.0
                 for e in range(experts)]
        order = sorted(range(experts), key=lambda e: (score[e], -e))
        kept.append(sorted(order[prune:]))
    return kept


def gguf_kept(path, layers):
    ids = field(gguf.GGUFReader(path), "moec.pruning.kept_experts")
    per = len(ids) // layers
    return [ids[i * per:(i + 1) * per] for i in range(layers)]


def held_aside_windows(a, from_byte):
    """The held-aside text's first EVAL_WINDOWS windows, as model-run's
    perplexity cuts them (BOS first)."""
    text = open(a.text, "rb").read()[from_byte:].decode()
    ids = [int(t) for t in run([a.moec, "tokenize", "--model", a.model,
                                "--bos"], input=text).stdout.split()]
    bos = ids[0]
    windows = []
    for c in range(EVAL_WINDOWS):
        w = ids[c * CONTEXT:(c + 1) * CONTEXT]
        assert len(w) == CONTEXT, "the held-aside text is too short"
        w[0] = bos
        windows.append(w)
    return windows


def reference_logits(a, model, windows, name):
    out = os.path.join(a.workdir, f"reference-{name}.f32")
    run([a.reference, model, "--tokens",
         ";".join(",".join(map(str, w)) for w in windows), "-o", out])
    return np.fromfile(out, dtype=np.float32).reshape(
        len(windows), CONTEXT, -1).astype(np.float64)


def mean_kl(base, other):
    """llama.cpp's KL over the scored positions: the second half of each
    window, but the last."""
    first = CONTEXT // 2
    b = base[:, first:CONTEXT - 1]
    o = other[:, first:CONTEXT - 1]
    lb = b - b.max(-1, keepdims=True)
    lb -= np.log(np.exp(lb).sum(-1, keepdims=True))
    lo = o - o.max(-1, keepdims=True)
    lo -= np.log(np.exp(lo).sum(-1, keepdims=True))
    return float((np.exp(lb) * (lb - lo)).sum(-1).mean())


def close(got, want, rel):
    return abs(got - want) <= rel * abs(want) + 1e-7


def inspect_record(a, bundle):
    r = run([a.moec, "inspect", bundle])
    record = order_line = None
    for line in r.stdout.splitlines():
        if line.startswith("compression {"):
            record = json.loads(line[len("compression "):])
        if line.startswith("compression order: "):
            order_line = line
    return record, order_line


def step_calibrate(a):
    run([a.moec, "calibrate", a.model, "-f", a.text, "-o", a.calib, "-c",
         str(CONTEXT), "--chunks", str(CALIBRATION_WINDOWS), "-t", "2"])
    print(f"calibrated on {CALIBRATION_WINDOWS} windows of {CONTEXT}")
    return []


def step_auto(a):
    failures = []
    out = os.path.join(a.workdir, "auto")
    r = run([a.moec, a.model, f"--calibration={a.calib}",
             f"--prune-experts={FRACTION}", *QUANTIZE,
             f"--order-eval-chunks={EVAL_WINDOWS}", "--activations=f32",
             "-o", out])
    logged = {m.group(1): float(m.group(2)) for m in re.finditer(
        r"moec: order: (\w+): mean KL divergence ([-+.e\d]+)", r.stderr)}
    record, order_line = inspect_record(a, os.path.join(out, "model.moeb"))
    order = record.get("order", {})
    keys = ["prune_then_quantize", "quantize_then_prune"]
    kl = {k: order.get(k, {}).get("kl_mean") for k in keys}
    print(f"record: chosen {order.get('chosen')}, mean KL {kl}")
    print(f"inspect: {order_line}")
    if set(logged) != set(keys) or None in kl.values():
        return [f"both orders' KL not logged and recorded: log {logged}, "
                f"record {order}"]
    for k in keys:
        if not close(logged[k], kl[k], 1e-5):
            failures.append(f"{k}: logged {logged[k]}, recorded {kl[k]}")
        if not kl[k] > 0:
            failures.append(f"{k}: KL {kl[k]} is not positive")
        if order[k].get("positions") != EVAL_WINDOWS * (CONTEXT // 2 - 1):
            failures.append(f"{k}: {order[k].get('positions')} positions")
    chosen = order.get("chosen")
    best = min(keys, key=lambda k: (kl[k], keys.index(k)))
    if chosen != best or not order.get("searched"):
        failures.append(f"chose {chosen}, the lower KL is {best}")
    if not order_line or chosen not in order_line.split()[2]:
        failures.append(f"inspect's order line: {order_line!r}")

    # The held-aside slice: the text's end, after the calibration windows.
    held = order.get("held_aside", {})
    text = open(a.text, "rb").read()
    ids = run([a.moec, "tokenize", "--model", a.model, "--bos"],
              input=text[:held.get("from_byte", 0)].decode()).stdout.split()
    if (held.get("windows") != EVAL_WINDOWS or held.get("context") != CONTEXT
            or os.path.realpath(held.get("text", "")) !=
            os.path.realpath(a.text)
            or len(ids) < CALIBRATION_WINDOWS * CONTEXT):
        failures.append(f"held aside {held}: {len(ids)} tokens before it")
    if order.get("calibration_windows", {}).get("windows") != \
            CALIBRATION_WINDOWS:
        failures.append(f"calibration windows {order.get('calibration_windows')}")

    # The chosen figure against logits computed here.
    windows = held_aside_windows(a, held["from_byte"])
    base = reference_logits(a, a.model, windows, "auto-original")
    compiled = []
    for i, w in enumerate(windows):
        path = os.path.join(a.workdir, f"auto-window{i}.f32")
        run([os.path.join(out, "model-run"), "--prompt-ids",
             ",".join(map(str, w)), "-n", "1", "-t", "2", "--logits-out",
             path])
        compiled.append(np.fromfile(path, dtype=np.float32)
                        .reshape(CONTEXT, -1))
    got = mean_kl(base, np.array(compiled, dtype=np.float64))
    print(f"{chosen}: mean KL {kl[chosen]:.6g} recorded, {got:.6g} from the "
          f"compiled model's logits against the reference's")
    if not close(got, kl[chosen], 0.01):
        failures.append(f"{chosen}: recorded KL {kl[chosen]}, measured {got}")

    # Routing only over the survivors.
    stats = os.path.join(a.workdir, "auto-stats.json")
    run([os.path.join(out, "model-run"), "--prompt-ids",
         ",".join(map(str, windows[0])), "-n", "1", "-t", "2", "--stats",
         stats])
    counts = json.load(open(stats))["routing"]["counts"]
    kept = record["pruning"]["kept_experts"]
    experts = field(gguf.GGUFReader(a.model), "qwen3moe.expert_count")[0]
    survivors = experts - int(FRACTION * experts)
    if any(len(c) != survivors for c in counts) or \
            any(len(k) != survivors for k in kept):
        failures.append(f"routing over {[len(c) for c in counts]} experts, "
                        f"kept {[len(k) for k in kept]}, want {survivors}")
    print(f"routes over {len(counts[0])} experts per layer")
    return failures


def expert_slices(path, name):
    """Tensor `name`'s raw bytes per expert and its type."""
    for t in gguf.GGUFReader(path).tensors:
        if t.name == name:
            data = np.asarray(t.data)
            return data.reshape(data.shape[0], -1), t.tensor_type
    raise KeyError(name)


def forced(a, flag, key):
    """moec --prune-order=`flag` with the search's flags: its GGUF, its KL
    measured here against what the search recorded for `key`."""
    failures = []
    record, _ = inspect_record(a, os.path.join(a.workdir, "auto",
                                               "model.moeb"))
    order = record["order"]
    reader = gguf.GGUFReader(a.model)
    layers = field(reader, "qwen3moe.block_count")[0]
    path = os.path.join(a.workdir, f"{flag}.gguf")
    run([a.moec, a.model, f"--calibration={a.calib}",
         f"--prune-experts={FRACTION}", *QUANTIZE, f"--prune-order={flag}",
         "--quiet", "--emit=moec-gguf", "-o", path])
    windows = held_aside_windows(a, order["held_aside"]["from_byte"])
    base = reference_logits(a, a.model, windows, f"{flag}-original")
    got = mean_kl(base, reference_logits(a, path, windows, flag))
    want = order[key]["kl_mean"]
    print(f"{key}: mean KL {want:.6g} recorded by the search, {got:.6g} by "
          f"the reference executor on --prune-order={flag}'s model")
    if not close(got, want, 0.01):
        failures.append(f"{key}: recorded KL {want}, reference {got}")
    if order["chosen"] == key and \
            gguf_kept(path, layers) != record["pruning"]["kept_experts"]:
        failures.append(f"{key} alone keeps other experts than the search")
    return path, failures


def step_prune_first(a):
    """calib.dat's lowest REAP go; the quantized slices are nearest to the
    survivors' originals."""
    path, failures = forced(a, "prune-first", "prune_then_quantize")
    reader = gguf.GGUFReader(a.model)
    experts = field(reader, "qwen3moe.expert_count")[0]
    layers = field(reader, "qwen3moe.block_count")[0]
    want = lowest_reap_kept(a.calib, experts)
    got = gguf_kept(path, layers)
    if got != want:
        failures.append(f"prune-first kept {got}, calib.dat says {want}")
    mismatched = 0
    for l in range(layers):
        name = f"blk.{l}.ffn_gate_exps.weight"
        original = next(t for t in reader.tensors if t.name == name)
        orig = np.asarray(original.data, dtype=np.float32).reshape(experts, -1)
        raw, qtype = expert_slices(path, name)
        deq = gguf.quants.dequantize(raw, qtype).reshape(len(got[l]), -1)
        for i, e in enumerate(got[l]):
            nearest = int(np.argmin(((orig - deq[i]) ** 2).sum(-1)))
            mismatched += nearest != e
    print(f"prune-first: kept the lowest-REAP experts of calib.dat; "
          f"{mismatched} quantized slices nearer another original")
    if mismatched:
        failures.append(f"prune-first: {mismatched} slices are not the kept "
                        f"experts'")
    return failures


def step_quantize_first(a):
    """The quantized model, quantized and calibrated here, decides; its
    slices survive byte for byte. Then the refusals."""
    path, failures = forced(a, "quantize-first", "quantize_then_prune")
    reader = gguf.GGUFReader(a.model)
    experts = field(reader, "qwen3moe.expert_count")[0]
    layers = field(reader, "qwen3moe.block_count")[0]
    quantized = os.path.join(a.workdir, "quantized.gguf")
    run([a.moec, a.model, f"--calibration={a.calib}", *QUANTIZE, "--quiet",
         "--emit=moec-gguf", "-o", quantized])
    qcalib = os.path.join(a.workdir, "quantized-calib.dat")
    run([a.moec, "calibrate", quantized, "-f", a.text, "-o", qcalib, "-c",
         str(CONTEXT), "--chunks", str(CALIBRATION_WINDOWS), "-t", "2"])
    want = lowest_reap_kept(qcalib, experts)
    got = gguf_kept(path, layers)
    if got != want:
        failures.append(f"quantize-first kept {got}, the quantized model's "
                        f"calibration says {want}")
    differing = 0
    for l in range(layers):
        for part in ("gate", "up", "down"):
            name = f"blk.{l}.ffn_{part}_exps.weight"
            full, _ = expert_slices(quantized, name)
            pruned, _ = expert_slices(path, name)
            differing += not np.array_equal(full[got[l]], pruned)
    print(f"quantize-first: kept the lowest-REAP experts of the quantized "
          f"model; {differing} expert tensors differ from its slices")
    if differing:
        failures.append(f"quantize-first: {differing} tensors are not the "
                        f"quantized model's slices")

    for args, message in [
        (["--prune-experts=0.25", "--prune-order=both"], "--prune-order"),
        (["--prune-order=prune-first"], "need --prune-experts"),
        (["--prune-experts=0.25", "--order-eval-chunks=0"],
         "--order-eval-chunks"),
        (["--prune-experts=0.25", "--order-eval-chunks=50"], "fewer than"),
    ]:
        r = run([a.moec, a.model, f"--calibration={a.calib}", *QUANTIZE,
                 "--quiet", "--emit=moec-gguf", "-o",
                 os.path.join(a.workdir, "x.gguf")] + args, ok=False)
        lines = r.stderr.strip().splitlines()
        if r.returncode == 0 or message not in r.stderr or len(lines) != 1:
            failures.append(f"{args}: rc {r.returncode}, {r.stderr!r}")
        else:
            print(f"refused: {lines[0]}")
    return failures


def main():
    p = argparse.ArgumentParser(description=__doc__)
    steps = {"calibrate": step_calibrate, "auto": step_auto,
             "prune-first": step_prune_first,
             "quantize-first": step_quantize_first}
    p.add_argument("--step", choices=list(steps), required=True)
    p.add_argument("--moec", required=True)
    p.add_argument("--reference", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--text", required=True)
    p.add_argument("--workdir", required=True)
    a = p.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    a.calib = os.path.join(a.workdir, "calib.dat")
    failures = steps[a.step](a)
    for f in failures:
        print("FAIL " + f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
