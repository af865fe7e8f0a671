#!/usr/bin/env python3
"""Where a decode step's threads work and wait, barrier by barrier.

    MOEC_BARRIER_PROFILE=prof.txt out/model-run --prompt-ids ... -n 64 -t 2
    python3 scripts/barrier_profile.py out/model-run prof.txt [--top 12]

The runtime (MOEC_BARRIER_PROFILE=FILE at model open) records, for every
barrier of the compiled schedule that a decode step (a one-token forward
call) passes and for every thread, the ticks the thread worked since its
previous barrier and the ticks it waited at this one. This script finds
each barrier's call site in the binary (objdump of moec_model_forward),
names the calls made since the previous barrier (the kernels of that
section; kernels the schedule inlines show as their library calls, or not
at all) and prints, per site in schedule order and per thread, microseconds
per step of work and of waiting; then the totals, the sites that wait the
most, and the single steps that stalled: a site whose one step took far
longer than its others (a thread descheduled for milliseconds on a shared
machine) shows that step's excess in its mean as if every step paid it.
Needs binutils (nm, objdump). A diagnostic, not a test.
"""

import argparse
import re
import subprocess
import sys


# A site's single step counts as a stall when it took STALL_FACTOR times
# the site's other steps or more and adds STALL_US_PER_STEP or more to
# the site's mean per step.
STALL_FACTOR = 5
STALL_US_PER_STEP = 5.0


def read_profile(path):
    meta, sites = {}, {}
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        f = line.split()
        if f[0] == "site" and len(f) in (10, 14):
            site, thread = int(f[1], 16), int(f[3])
            calls, wait, work = int(f[5]), int(f[7]), int(f[9])
            # The largest single wait and work (profiles from before they
            # were recorded have none).
            most = (int(f[11]), int(f[13])) if len(f) == 14 else None
            sites.setdefault(site, {})[thread] = (calls, wait, work, most)
        elif len(f) == 2:
            meta[f[0]] = f[1]
    for key in ("calls", "threads", "ticks_per_second", "forward"):
        if key not in meta:
            sys.exit(f"barrier_profile: {path} has no '{key}' line: not a "
                     "moec barrier profile")
    return meta, sites


def symbols(binary):
    out = subprocess.run(["nm", "-S", "--defined-only", binary],
                         capture_output=True, text=True, check=True).stdout
    table = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) == 4:
            table[f[3]] = (int(f[0], 16), int(f[1], 16))
    return table


def calls_in(binary, start, size):
    """(return address, callee) of every call in [start, start + size)."""
    out = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", f"--start-address={start}",
         f"--stop-address={start + size}", binary],
        capture_output=True, text=True, check=True).stdout
    lines = [l for l in out.splitlines() if re.match(r"\s*[0-9a-f]+:", l)]
    result = []
    for i, line in enumerate(lines):
        m = re.match(r"\s*([0-9a-f]+):\s+call\s+\w+ <([^>]+)>", line)
        if m and i + 1 < len(lines):
            after = int(lines[i + 1].split(":")[0], 16)
            result.append((after, m.group(2)))
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("binary", help="the model-run (or program) that ran")
    p.add_argument("profile", help="the file MOEC_BARRIER_PROFILE named")
    p.add_argument("--top", type=int, default=12,
                   help="how many of the most-waiting sites to list")
    a = p.parse_args()

    meta, sites = read_profile(a.profile)
    steps = int(meta["calls"])
    threads = int(meta["threads"])
    us_per_tick = 1e6 / float(meta["ticks_per_second"])
    if steps == 0:
        sys.exit("barrier_profile: the profile has no decode steps")
    syms = symbols(a.binary)
    for name in ("_mlir_ciface_moec_model_forward", "moec_model_forward"):
        if name not in syms:
            sys.exit(f"barrier_profile: {a.binary} has no {name}: not the "
                     "binary that wrote the profile")
    # The sites as the binary's link-time addresses.
    shift = syms["_mlir_ciface_moec_model_forward"][0] - int(meta["forward"], 16)
    start, size = syms["moec_model_forward"]
    by_address = {site + shift: stats for site, stats in sites.items()}
    unknown = [s for s in by_address if not start <= s < start + size]
    if unknown:
        sys.exit(f"barrier_profile: {len(unknown)} sites lie outside "
                 "moec_model_forward: the profile is from another binary")

    rows, between = [], []
    for after, callee in calls_in(a.binary, start, size):
        if callee == "moec_rt_barrier":
            if after in by_address:
                rows.append((after, ",".join(between), by_address[after]))
            between = []
        else:
            between.append(re.sub(r"^moec_", "", re.sub(r"@plt$", "", callee)))

    def per_step(ticks):
        return ticks * us_per_tick / steps

    head = "".join(f" | t{t} work | t{t} wait" for t in range(threads))
    print(f"{steps} decode steps, {threads} threads; microseconds per step")
    print(f"site{head} | calls since the previous barrier")
    totals = [[0.0, 0.0] for _ in range(threads)]
    waits = []
    stalls = []
    for after, names, stats in rows:
        cells = ""
        worst = 0.0
        for t in range(threads):
            calls, wait, work, most = stats.get(t, (0, 0, 0, None))
            if most and calls > 1:
                for what, total, largest in (("wait", wait, most[0]),
                                             ("work", work, most[1])):
                    others = (total - largest) / (calls - 1)
                    stalls.append((per_step(largest - others), after - start, t,
                                   what, largest * us_per_tick,
                                   others * us_per_tick, names))
            totals[t][0] += per_step(work)
            totals[t][1] += per_step(wait)
            worst = max(worst, per_step(wait))
            cells += f" | {per_step(work):7.1f} | {per_step(wait):7.1f}"
        waits.append((worst, after - start, names))
        shown = names if len(names) <= 70 else names[:67] + "..."
        print(f"+{after - start:x}{cells} | {shown}")
    print("total" + "".join(
        f" | {w:7.1f} | {x:7.1f}" for w, x in totals) + " |")
    for t, (w, x) in enumerate(totals):
        share = 100 * x / (w + x) if w + x else 0
        print(f"thread {t}: {w + x:.1f} us per step between its first and "
              f"last barrier, {share:.1f}% of it waiting")
    print(f"\nthe {a.top} sites that wait the most (worst thread, us per step):")
    for worst, offset, names in sorted(waits, reverse=True)[:a.top]:
        shown = names if len(names) <= 70 else names[:67] + "..."
        print(f"  +{offset:x}: {worst:.1f} after {shown or '(no calls)'}")
    # One step that took far longer than the site's others is the machine
    # (a thread descheduled for milliseconds), not the schedule: it adds
    # its excess over the steps to that site's mean.
    single = [x for x in stalls if x[0] >= STALL_US_PER_STEP and
              x[4] >= STALL_FACTOR * max(x[5], 1.0)]
    if single:
        print(f"\nsingle steps that stalled (one step {STALL_FACTOR}x the "
              "site's others or more; its excess, us per step, is in the "
              "means above):")
        for excess, offset, t, what, largest, others, names in sorted(
                single, reverse=True)[:a.top]:
            shown = names if len(names) <= 50 else names[:47] + "..."
            print(f"  +{offset:x} t{t} {what}: {excess:.1f} (one step "
                  f"{largest:.0f} us, the others {others:.1f} us) after "
                  f"{shown or '(no calls)'}")


if __name__ == "__main__":
    main()
