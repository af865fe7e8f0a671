#!/usr/bin/env python3
"""A compiled model against the reference executor.

Synthesizes a model (moec synth), compiles it for a target (moec -o out/),
runs out/model-run on a prompt and greedy steps, and compares the logits of
every position with the reference executor's (moec-reference) on the same
token sequence:

  * max |compiled - reference| / max |reference| of each position's logits
    must stay within --tolerance;
  * the top-1 token must equal the reference's wherever the reference's
    top-1/top-2 margin exceeds twice the largest logit error seen in the run
    (elsewhere rounding may legitimately flip it).

The prompt's last position is also checked from a plain prefill
(--generated-logits-out), which computes the last layer for that token
alone; the other run asks for every position's logits.

The generated tokens come from the compiled model; the reference is run on
the same sequence (teacher forcing), so one divergent argmax does not derail
the rest of the comparison.
"""

import argparse
import os
import random
import subprocess
import sys

import numpy as np


def run(cmd, **kw):
    result = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if result.returncode != 0:
        sys.exit(f"FAILED ({result.returncode}): {' '.join(cmd)}\n"
                 f"{result.stdout}\n{result.stderr}")
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--moec", required=True)
    p.add_argument("--reference", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--family", required=True,
                   help="the family to synthesize, or the name of --model's")
    p.add_argument("--model", help="compile this GGUF instead of a synthesized one")
    p.add_argument("--compressed-reference", action="store_true",
                   help="run the reference on the GGUF that --compile-args' "
                        "compression flags make (moec --emit=moec-gguf), not "
                        "on the source model")
    p.add_argument("--expect-mixed-experts", action="store_true",
                   help="require a layer whose experts have different "
                        "formats (moec inspect's 'mixed:')")
    p.add_argument("--also-streamed", action="store_true",
                   help="also run under the smallest memory budget plus a "
                        "few experts (experts streamed): tokens and logits "
                        "must be the resident run's, bit for bit")
    p.add_argument("--synth-args", default="",
                   help="extra moec synth arguments, space-separated")
    p.add_argument("--target", default="host")
    p.add_argument("--compile-args", default="")
    p.add_argument("--reference-args", default="",
                   help="extra moec-reference arguments, space-separated "
                        "(--kv-cache=f16 for a model compiled with f16 KV "
                        "caches)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--tolerance", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()

    os.makedirs(a.workdir, exist_ok=True)
    model = a.model or os.path.join(a.workdir, "model.gguf")
    out = os.path.join(a.workdir, "out")
    if not a.model:
        run([a.moec, "synth", f"--family={a.family}", "--preset=tiny",
             f"--seed={a.seed}", "-o", model] + a.synth_args.split())
    run([a.moec, model, f"--target={a.target}", "--quiet", "-o", out] +
        a.compile_args.split())
    if a.expect_mixed_experts:
        text = run([a.moec, "inspect", os.path.join(out, "model.moeb")]).stdout
        mixed = [l for l in text.splitlines() if " mixed: " in l]
        if not mixed:
            sys.exit("FAILED: no layer's experts have different formats:\n" +
                     text)
        print(f"{len(mixed)} layers with experts of different formats")

    vocab = None
    info = run([a.moec, "inspect", model]).stdout
    for line in info.splitlines():
        if "vocab" in line:
            for word in line.replace(",", " ").split():
                if word.isdigit():
                    vocab = int(word)
                    break
        if vocab:
            break
    vocab = vocab or 256
    rng = random.Random(a.seed)
    prompt = [rng.randrange(vocab) for _ in range(a.prompt)]
    got_path = os.path.join(a.workdir, "compiled.f32")
    r = run([os.path.join(out, "model-run"), "--prompt-ids",
             ",".join(map(str, prompt)), "-n", str(a.steps), "-t",
             str(a.threads), "--logits-out", got_path])
    generated = [int(t) for t in r.stdout.split()]
    if len(generated) != a.steps:
        sys.exit(f"model-run printed {len(generated)} tokens, expected "
                 f"{a.steps}: {r.stdout!r}")
    if a.also_streamed:
        # The runtime's own minimum, from its refusal of a 1 KiB budget.
        probe = subprocess.run([os.path.join(out, "model-run"), "--prompt-ids",
                                "1", "--memory-budget", "1K"],
                               capture_output=True, text=True)
        import re
        m = re.search(r"needs at least (\d+) bytes .* (\d+) experts of (\d+)",
                      probe.stderr)
        if not m:
            sys.exit(f"no minimum budget in {probe.stderr!r}")
        budget = int(m.group(1)) + 4 * int(m.group(3))
        streamed_path = os.path.join(a.workdir, "streamed.f32")
        stats_path = os.path.join(a.workdir, "streamed-stats.json")
        s = run([os.path.join(out, "model-run"), "--prompt-ids",
                 ",".join(map(str, prompt)), "-n", str(a.steps), "-t",
                 str(a.threads), "--memory-budget", str(budget),
                 "--logits-out", streamed_path, "--stats", stats_path])
        import json
        experts = json.load(open(stats_path))["experts"]
        if experts["plan"] != "streaming" or experts["misses"] == 0:
            sys.exit(f"the budget of {budget} bytes did not stream: {experts}")
        if s.stdout != r.stdout or \
                open(streamed_path, "rb").read() != open(got_path, "rb").read():
            sys.exit(f"streamed under {budget} bytes: tokens or logits differ "
                     f"from the resident run's")
        print(f"streamed under {budget} bytes ({experts['misses']} misses): "
              f"identical to the resident run")
    got = np.fromfile(got_path, dtype=np.float32)
    rows = a.prompt + a.steps - 1  # the last generated token is not fed
    if got.size % rows:
        sys.exit(f"compiled logits: {got.size} floats for {rows} positions")
    vocab = got.size // rows
    got = got.reshape(rows, vocab)

    ref_path = os.path.join(a.workdir, "reference.f32")
    sequence = prompt + generated[:-1]
    reference_model = model
    if a.compressed_reference:
        reference_model = os.path.join(a.workdir, "compressed.gguf")
        run([a.moec, model, "--quiet", "--emit=moec-gguf", "-o",
             reference_model] +
            [f for f in a.compile_args.split()
             if not f.startswith(("--activations", "--kv-cache"))])
    run([a.reference, reference_model, "--tokens", ",".join(map(str, sequence)), "-o",
         ref_path] + a.reference_args.split())
    ref = np.fromfile(ref_path, dtype=np.float32).reshape(rows, vocab)

    errors = np.abs(got.astype(np.float64) - ref).max(axis=1) / \
        np.abs(ref).max(axis=1)
    worst = float(errors.max())
    abs_err = float(np.abs(got.astype(np.float64) - ref).max())
    top2 = np.sort(ref, axis=1)[:, -2:]
    margins = top2[:, 1] - top2[:, 0]
    checked = mismatched = 0
    for i in range(rows):
        if margins[i] > 2 * abs_err:
            checked += 1
            if got[i].argmax() != ref[i].argmax():
                mismatched += 1
                print(f"position {i}: top-1 {got[i].argmax()} vs reference "
                      f"{ref[i].argmax()} (margin {margins[i]:.4g})")
    # A plain prefill computes the last layer past its keys and values for
    # the prompt's last token alone: its logits must be the reference's too.
    last_path = os.path.join(a.workdir, "prefill-last.f32")
    run([os.path.join(out, "model-run"), "--prompt-ids",
         ",".join(map(str, prompt)), "-n", "1", "-t", str(a.threads),
         "--generated-logits-out", last_path])
    last = np.fromfile(last_path, dtype=np.float32)
    if last.size != vocab:
        sys.exit(f"--generated-logits-out: {last.size} floats, expected one "
                 f"row of {vocab}")
    want = ref[a.prompt - 1].astype(np.float64)
    last_error = float(np.abs(last - want).max() / np.abs(want).max())
    worst = max(worst, last_error)
    if margins[a.prompt - 1] > 2 * abs_err and \
            last.argmax() != ref[a.prompt - 1].argmax():
        mismatched += 1
        print(f"prefill's last position: top-1 {last.argmax()} vs reference "
              f"{ref[a.prompt - 1].argmax()}")
    print(f"prefill's last position alone: relative logit error "
          f"{last_error:.3g}")
    # Greedy decoding itself: every generated token is the argmax of the
    # compiled logits of its position.
    for s in range(a.steps - 1):
        if generated[s] != int(got[a.prompt - 1 + s].argmax()):
            sys.exit(f"step {s}: model-run printed {generated[s]}, its logits' "
                     f"argmax is {int(got[a.prompt - 1 + s].argmax())}")
    print(f"{a.family} on {a.target}: {rows} positions, worst relative logit "
          f"error {worst:.3g} (tolerance {a.tolerance:g}), top-1 checked at "
          f"{checked} positions, {mismatched} mismatched")
    if worst > a.tolerance or mismatched:
        sys.exit(1)


if __name__ == "__main__":
    main()
