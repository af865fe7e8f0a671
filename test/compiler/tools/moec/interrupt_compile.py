#!/usr/bin/env python3
"""Kills `moec MODEL -o OUT` at several moments and checks that OUT never
holds a partial file under a final name: after each kill, either none of
the four outputs exists or all do and they are complete (the last run's
complete outputs: a later kill must not damage them). The next run removes
the hidden temporaries a killed run left."""

import os
import signal
import subprocess
import sys
import time

FINAL = ["libmodel.a", "model-run", "model.h", "model.moeb"]


def main():
    moec, model, out = sys.argv[1:4]
    subprocess.run(["rm", "-rf", out], check=True)
    reference = out + ".complete"
    subprocess.run(["rm", "-rf", reference], check=True)
    subprocess.run([moec, model, "--quiet", "-o", reference], check=True)
    full = {f: open(os.path.join(reference, f), "rb").read() for f in FINAL}
    for delay in [0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6]:
        p = subprocess.Popen([moec, model, "--quiet", "-o", out])
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        present = [f for f in FINAL if os.path.exists(os.path.join(out, f))]
        if present and len(present) != len(FINAL):
            sys.exit(f"killed after {delay}s: only {present} exist")
        for f in present:
            if open(os.path.join(out, f), "rb").read() != full[f]:
                sys.exit(f"killed after {delay}s: {f} is not complete")
        print(f"killed after {delay}s: {len(present)} final files, all complete")
    # A full run cleans up the temporaries of the killed ones.
    subprocess.run([moec, model, "--quiet", "-o", out], check=True)
    left = sorted(set(os.listdir(out)) - set(FINAL))
    if left:
        sys.exit(f"temporaries left after a full run: {left}")
    print("a full run leaves only", ", ".join(sorted(os.listdir(out))))


if __name__ == "__main__":
    main()
