#!/usr/bin/env python3
"""Streamed experts against all-resident ones, on a synthesized model of one
family, compiled for the host:

  * greedy tokens and logits of a run whose memory budget leaves room for a
    few experts only (a fraction of the model) are bit-identical to the
    all-resident run's, with LRU and LFU, io_uring and pread;
  * compute overlaps reads: with reads slowed down (MOEC_IO_FAULT=slow@MS),
    the code computes on the experts of a layer that are cached while the
    missed ones' reads are in flight, then on those (the stats count both),
    and the tokens and logits are still the resident run's;
  * the budget is real: the stats show misses and evictions, peak RSS stays
    within the budget plus a fixed overhead (--overhead-mib), the bytes the
    process read from storage (/proc/self/io) cover the bytes the misses
    read (when the file system takes O_DIRECT), nothing is written;
  * injected faults (MOEC_IO_FAULT: EIO, a short read that checksums catch;
    a corrupted extent) end the run with one message naming the bundle,
    layer, expert and offset and a non-zero exit, and no token after it.

usage: check_streaming.py --moec MOEC --workdir DIR --family F
"""
import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys


def run(cmd, env=None, check=True):
    out = subprocess.run(cmd, capture_output=True, env=env)
    if check and out.returncode != 0:
        sys.exit(f"FAILED: {' '.join(cmd)}\n{out.stderr.decode()}")
    return out


def fail(message):
    print(f"FAIL: {message}")
    sys.exit(1)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--moec", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--family", required=True)
    p.add_argument("--synth-args", default="")
    p.add_argument("--slots", type=int, default=3,
                   help="experts the cache holds beyond one token's")
    p.add_argument("--overhead-mib", type=int, default=64)
    a = p.parse_args()
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    model = os.path.join(a.workdir, "model.gguf")
    out = os.path.join(a.workdir, "out")
    run([a.moec, "synth", f"--family={a.family}", "--preset=tiny",
         "--layers=4", "--experts=8", "--experts-used=2", "--seed=3",
         "-o", model] + a.synth_args.split())
    run([a.moec, model, "--target=host", "-o", out, "--quiet"])
    model_run = os.path.join(out, "model-run")
    bundle = os.path.join(out, "model.moeb")

    # The smallest budget the runtime takes, from its own message.
    probe = run([model_run, "--prompt-ids", "1", "--memory-budget", "1K"],
                check=False).stderr.decode()
    m = re.search(r"needs at least ([0-9]+) bytes .* ([0-9]+) experts of "
                  r"([0-9]+) bytes", probe)
    if not m:
        fail(f"no minimum in {probe!r}")
    minimum, extent = int(m.group(1)), int(m.group(3))
    budget = minimum + a.slots * extent
    size = os.path.getsize(bundle)
    print(f"{a.family}: bundle {size} bytes, extent {extent}, budget {budget} "
          f"(minimum {minimum})")

    prompt = ",".join(str((i * 37 + 11) % 200 + 1) for i in range(12))

    def generate(extra, env=None, check=True):
        logits = os.path.join(a.workdir, "logits.bin")
        stats = os.path.join(a.workdir, "stats.json")
        if os.path.exists(logits):
            os.remove(logits)
        r = run([model_run, "--prompt-ids", prompt, "-n", "16", "-t", "2",
                 "--logits-out", logits, "--stats", stats] + extra,
                env=env, check=check)
        if r.returncode != 0:
            return r, None, None
        return r, open(logits, "rb").read(), json.load(open(stats))

    ref, want, resident = generate([])
    if resident["experts"]["plan"] != "all-resident":
        fail(f"the run without a budget streams: {resident['experts']}")
    slow = dict(os.environ, MOEC_IO_FAULT="slow@30")
    for extra, env in ((["--cache-policy", "lru", "--io", "uring"], None),
                       (["--cache-policy", "lfu", "--io", "pread"], None),
                       (["--cache-policy", "lru", "--no-prefetch"], None),
                       (["--cache-policy", "lfu"], slow)):
        r, got, stats = generate(["--memory-budget", str(budget)] + extra,
                                 env=env)
        e, mem = stats["experts"], stats["memory"]
        if e["plan"] != "streaming" or e["misses"] == 0 or e["evictions"] == 0:
            fail(f"{extra}: the budget did not stream: {e}")
        overlap = e["overlap"]
        if env is slow:
            # Every miss (and prefetch still in flight) is still being read
            # when the layer's compute starts: each is waited for after the
            # first pass, and some layers had cached experts to compute on
            # meanwhile.
            if overlap["experts_waited_for"] < e["misses"] or \
                    overlap["experts_computed_during_reads"] == 0:
                fail(f"{extra} with slowed reads: no overlap: {e}")
            extra = extra + ["(reads slowed to 30 ms)"]
        if r.stdout != ref.stdout or got != want:
            fail(f"{extra}: tokens or logits differ from the resident run:\n"
                 f"{r.stdout!r}\n{ref.stdout!r}")
        overhead = mem["peak_rss_bytes"] - mem["budget_bytes"]
        if mem["budget_bytes"] > budget or overhead > a.overhead_mib << 20:
            fail(f"{extra}: peak RSS {mem['peak_rss_bytes']} for a budget of "
                 f"{budget} ({mem['budget_bytes']} used)")
        if "buffered" not in e["io_engine"] and \
                mem["storage_read_bytes"] < e["bytes_read"]:
            fail(f"{extra}: /proc/self/io read {mem['storage_read_bytes']} "
                 f"bytes, less than the {e['bytes_read']} the misses read")
        # The only writes: --logits-out's file (its pages, some of them
        # dirtied twice as rows are appended), nothing for the experts.
        logits_bytes = len(got)
        if mem["storage_written_bytes"] > 2 * logits_bytes + 8192:
            fail(f"{extra}: wrote {mem['storage_written_bytes']} bytes, more "
                 f"than the {logits_bytes} bytes of --logits-out")
        print(f"  {' '.join(extra)}: identical; hit rate {e['hit_rate']}, "
              f"{overlap['experts_computed_during_reads']} experts computed "
              f"during reads, "
              f"{e['misses']} misses, {e['evictions']} evictions, peak RSS "
              f"{mem['peak_rss_bytes']} = budget used {mem['budget_bytes']} + "
              f"{overhead >> 10} KiB; storage read {mem['storage_read_bytes']} "
              f"for {e['bytes_read']} missed")

    # Faults: one message naming the bundle, layer, expert and offset; exit
    # code 1; nothing printed on stdout (ids are printed at the end).
    def expect_fault(label, extra, env_fault, pattern, path=bundle):
        env = dict(os.environ)
        if env_fault:
            env["MOEC_IO_FAULT"] = env_fault
        r, _, _ = generate(["--memory-budget", str(budget), "-m", path] + extra,
                           env=env, check=False)
        err = r.stderr.decode()
        if r.returncode != 1 or r.stdout or not re.fullmatch(
                "model-run: error: " + re.escape(path) + pattern + "\n", err):
            fail(f"{label}: exit {r.returncode}, stdout {r.stdout!r}, "
                 f"stderr {err!r}")
        print(f"  {label}: {err.strip()}")

    expect_fault("EIO", [], "eio@5",
                 r": reading layer [0-9]+ expert [0-9]+ at offset [0-9]+: "
                 r"Input/output error")
    expect_fault("short read", ["--io", "pread"], "short@5",
                 r": offset [0-9]+: extent of layer [0-9]+ expert [0-9]+: "
                 r"checksum mismatch")
    corrupt = os.path.join(a.workdir, "corrupt.moeb")
    shutil.copyfile(bundle, corrupt)
    data = bytearray(open(corrupt, "rb").read())
    # One flipped byte in every expert extent (runtime/abi/moec_bundle.h:
    # the expert table follows the metadata, names and tensor table).
    tables, metadata, strings = struct.unpack_from("<QQQ", data, 32)
    tensors, experts = struct.unpack_from("<II", data, 56)
    table = tables + metadata + strings + tensors * 80
    for i in range(experts):
        offset, length = struct.unpack_from("<QQ", data, table + i * 104 + 8)
        data[offset + length // 2] ^= 0x20
    open(corrupt, "wb").write(bytes(data))
    expect_fault("corrupted extent", [], None,
                 r": offset [0-9]+: extent of layer [0-9]+ expert [0-9]+: "
                 r"checksum mismatch", corrupt)
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
