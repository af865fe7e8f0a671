#!/usr/bin/env python3
"""Decoding the 3.8 GB benchmark model with its experts streamed under
--memory-budget (default 1 GiB), beside this disk's O_DIRECT read bandwidth
measured in the same run. Run by hand (bench/README.md):

    python3 bench/streaming_bench_model.py --moec build/bin/moec \\
        --model /var/tmp/moec-bench/qwen3moe-bench.gguf [--budget 1GiB]

Prints one markdown row per I/O engine and the JSON behind them:
tokens/s, bytes read per token, hit rate, stall per token, and the storage
bound (the better O_DIRECT bandwidth -- 1 MiB reads, or reads of the
runtime's own size, --probe-depth at a time -- divided by bytes read per
token).

The page cache cannot hide the budget: every run (moec's, and llama.cpp's
on the same GGUF, which mmaps it) starts with the model's files dropped
from the page cache and runs inside a memory cgroup whose limit
(--cgroup-limit, default the budget + 256 MiB) counts the page cache, and
after each moec run `fincore` reports how much of the bundle is cached.
Where no memory cgroup can be made (not root, no memory controller) the
runs go on without one and the JSON says so.
"""
import argparse
import ctypes
import json
import mmap
import os
import random
import subprocess
import sys
import threading
import time


def direct_bandwidth(path, block, depth=8, total=512 << 20):
    """Random O_DIRECT reads of `block` bytes, `depth` at a time."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    size = os.fstat(fd).st_size
    blocks = max(1, (size - block) // 4096)
    count = max(depth, total // block)
    done = [0]
    lock = threading.Lock()

    def worker(seed):
        rng = random.Random(seed)
        buf = mmap.mmap(-1, block)
        while True:
            with lock:
                if done[0] >= count:
                    return
                done[0] += 1
            os.preadv(fd, [buf], rng.randrange(blocks) * 4096)

    start = time.time()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(depth)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    os.close(fd)
    return count * block / (time.time() - start)


def parse_size(text):
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().replace("ib", "").replace("b", "")
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


class MemoryCgroup:
    """A memory cgroup (v2 where the unified hierarchy has the memory
    controller, else v1) that children join before they exec."""

    def __init__(self, name, limit):
        self.path, self.procs = None, None
        candidates = []
        for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
            try:
                if "memory" in open(os.path.join(root, "cgroup.controllers")).read().split():
                    candidates.append(("v2", root))
            except OSError:
                pass
        if os.path.isdir("/sys/fs/cgroup/memory"):
            candidates.append(("v1", "/sys/fs/cgroup/memory"))
        for version, root in candidates:
            path = os.path.join(root, name)
            try:
                os.makedirs(path, exist_ok=True)
                if version == "v2":
                    open(os.path.join(path, "memory.max"), "w").write(str(limit))
                    open(os.path.join(path, "memory.swap.max"), "w").write("0")
                else:
                    open(os.path.join(path, "memory.limit_in_bytes"), "w").write(str(limit))
                self.path, self.version = path, version
                self.procs = os.path.join(path, "cgroup.procs")
                return
            except OSError as e:
                self.error = f"{path}: {e}"
        self.error = getattr(self, "error", "no memory cgroup hierarchy")

    def join(self):  # runs in the child, before exec
        if self.procs:
            with open(self.procs, "w") as f:
                f.write(str(os.getpid()))

    def peak(self):
        if not self.path:
            return None
        name = "memory.peak" if self.version == "v2" else "memory.max_usage_in_bytes"
        try:
            return int(open(os.path.join(self.path, name)).read())
        except OSError:
            return None

    def reset_peak(self):
        if self.path and self.version == "v1":
            try:
                open(os.path.join(self.path, "memory.max_usage_in_bytes"), "w").write("0")
            except OSError:
                pass

    def remove(self):
        if self.path:
            try:
                os.rmdir(self.path)
            except OSError:
                pass


def drop_from_page_cache(path):
    """POSIX_FADV_DONTNEED over the file: its clean cached pages go."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def cached_bytes(path):
    """Bytes of `path` in the page cache (fincore), or None."""
    try:
        r = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", path],
                           capture_output=True, text=True, check=True)
        return int(r.stdout.split()[0])
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError):
        return None


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--moec", required=True)
    p.add_argument("--model", default="/var/tmp/moec-bench/qwen3moe-bench.gguf")
    p.add_argument("--work", default="/var/tmp/moec-bench/streaming-bench")
    p.add_argument("--budget", default="1GiB")
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--probe-depth", type=int, default=32,
                   help="reads in flight of the bandwidth probe (the runtime "
                        "keeps up to 64)")
    p.add_argument("--cgroup-limit", default=None,
                   help="memory cgroup limit of each run (default: the "
                        "budget + 256 MiB)")
    p.add_argument("--llama-venv", default="/var/tmp/moec-bench/llama-venv",
                   help="llama-cpp-python's venv (bench/setup_llama_cpp.sh); "
                        "'' skips llama.cpp")
    p.add_argument("--llama-tokens", type=int, default=8,
                   help="decode steps llama.cpp is timed for under the cap")
    a = p.parse_args()
    limit = parse_size(a.cgroup_limit) if a.cgroup_limit else \
        parse_size(a.budget) + (256 << 20)
    out = os.path.join(a.work, "out")
    if not os.path.exists(os.path.join(out, "model-run")) or \
            os.path.getmtime(os.path.join(out, "model-run")) < os.path.getmtime(a.moec):
        t = time.time()
        subprocess.run([a.moec, a.model, "--target=host", "-o", out, "--quiet"],
                       check=True)
        print(f"compiled in {time.time() - t:.1f} s")
    bundle = os.path.join(out, "model.moeb")
    with open(bundle, "rb") as f:
        import struct
        head = f.read(112)
        tables, metadata, strings = struct.unpack_from("<QQQ", head, 32)
        tensors, experts = struct.unpack_from("<II", head, 56)
        f.seek(tables + metadata + strings + tensors * 80)
        table = f.read(104)
        extent = struct.unpack_from("<Q", table, 16)[0]
    extent_aligned = (extent + 4095) // 4096 * 4096
    bw_mib = direct_bandwidth(bundle, 1 << 20, depth=a.probe_depth)
    bw_extent = direct_bandwidth(bundle, extent_aligned, depth=a.probe_depth)
    cgroup = MemoryCgroup(f"moec-bench-{os.getpid()}", limit)
    bandwidth = max(bw_mib, bw_extent)
    rows, results = [], []
    prompt = ",".join(str(i * 97 % 31000 + 10) for i in range(8))
    for io in ["uring", "pread"]:
        stats = os.path.join(a.work, f"stats-{io}.json")
        drop_from_page_cache(bundle)
        cgroup.reset_peak()
        r = subprocess.run([os.path.join(out, "model-run"), "--prompt-ids", prompt,
                            "-n", str(a.tokens), "-t", str(a.threads), "-b", "1",
                            "--memory-budget", a.budget, "--io", io,
                            "--stats", stats], capture_output=True, text=True,
                           preexec_fn=cgroup.join)
        if r.returncode != 0:
            cgroup.remove()
            sys.exit(r.stderr)
        bundle_cached = cached_bytes(bundle)
        cgroup_peak = cgroup.peak()
        d = json.load(open(stats))
        e, run = d["experts"], d["run"]
        tokens = run["prompt_tokens"] + run["generated_tokens"] - 1
        per_token = e["bytes_read"] / tokens
        tok_s = tokens / e["forward_seconds"]
        bound = bandwidth / per_token
        row = (f"| {io} | {a.budget} | {tok_s:.2f} | {per_token / 1e6:.1f} MB | "
               f"{e['hit_rate']:.3f} | {1e3 * e['stall_seconds'] / tokens:.0f} ms | "
               f"{bound:.2f} | {tok_s / bound:.0%} | {d['memory']['peak_rss_bytes'] >> 20} MiB | "
               f"{'-' if cgroup_peak is None else str(cgroup_peak >> 20) + ' MiB'} | "
               f"{'-' if bundle_cached is None else str(bundle_cached >> 20) + ' MiB'} |")
        rows.append(row)
        results.append({"io": io, "tokens_per_s": tok_s,
                        "bytes_read_per_token": per_token, "hit_rate": e["hit_rate"],
                        "stall_s_per_token": e["stall_seconds"] / tokens,
                        "storage_bound_tokens_per_s": bound,
                        "fraction_of_bound": tok_s / bound,
                        "peak_rss_bytes": d["memory"]["peak_rss_bytes"],
                        "cgroup_peak_bytes": cgroup_peak,
                        "bundle_bytes_cached_after": bundle_cached,
                        "overlap": e.get("overlap"),
                        "prefetch": e["prefetch"]})
    # llama.cpp on the same GGUF under the same cap (it mmaps the model: the
    # page cache is all it has, and the cap bounds it).
    # Twice: as llama.cpp loads by default (it repacks Q4_0 experts into
    # anonymous CPU_REPACK buffers), and with the weights left in the
    # mapping (--no-repack), its only way to run within a cap.
    llama = []
    python = os.path.join(a.llama_venv, "bin", "python") if a.llama_venv else ""
    for repack in ([True, False] if python and os.path.exists(python) else []):
        drop_from_page_cache(a.model)
        cgroup.reset_peak()
        peer = os.path.join(os.path.dirname(os.path.abspath(__file__)), "llama_peer.py")
        name = "llama.cpp (mmap" + (", repack)" if repack else ", --no-repack)")
        t0 = time.time()
        r = subprocess.run([python, peer, "--model", a.model, "--prompt-ids", prompt,
                            "--decode", str(a.llama_tokens), "--threads", str(a.threads),
                            "--warmup-decode", "1"] + ([] if repack else ["--no-repack"]),
                           capture_output=True, text=True, preexec_fn=cgroup.join)
        peak = cgroup.peak()
        peak_text = "-" if peak is None else f"{peak >> 20} MiB"
        if r.returncode == 0:
            j = json.loads(r.stdout)
            llama.append({"repack": repack,
                          "decode_tokens_per_s": j["decode_tokens_per_s"],
                          "prefill_tokens_per_s": j["prefill_tokens_per_s"],
                          "decode_steps": a.llama_tokens, "wall_s": time.time() - t0,
                          "cgroup_peak_bytes": peak})
            rows.append(f"| {name} | cap {limit >> 20} MiB | "
                        f"{j['decode_tokens_per_s']:.2f} | - | - | - | - | - | - | "
                        f"{peak_text} | - |")
        else:
            # A kill by the cgroup's OOM killer is the usual end (-9).
            llama.append({"repack": repack, "returncode": r.returncode,
                          "wall_s": time.time() - t0, "cgroup_peak_bytes": peak,
                          "stderr_tail": r.stderr[-1500:]})
            rows.append(f"| {name} | cap {limit >> 20} MiB | failed (exit "
                        f"{r.returncode}{', killed' if r.returncode < 0 else ''}) | "
                        f"- | - | - | - | - | - | {peak_text} | - |")
    cgroup.remove()
    print(f"bundle {os.path.getsize(bundle) / 2**30:.2f} GiB, extent "
          f"{extent_aligned} bytes; O_DIRECT random reads at depth {a.probe_depth}: 1 MiB "
          f"{bw_mib / 1e6:.0f} MB/s, extent-sized {bw_extent / 1e6:.0f} MB/s; "
          f"{a.tokens} tokens decoded one per call, {a.threads} threads; "
          + (f"each run in a memory cgroup ({cgroup.version}) capped at {limit >> 20} MiB"
             if cgroup.path else f"no memory cgroup ({cgroup.error})"))
    print("| engine | budget | tok/s | read/token | hit rate | stall/token | "
          "storage bound tok/s | of bound | peak RSS | cgroup peak | bundle cached after |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))
    ran = [l for l in llama if "decode_tokens_per_s" in l]
    if ran and results:
        best = max(r["tokens_per_s"] for r in results)
        for l in ran:
            print(f"moec / llama.cpp ({'repack' if l['repack'] else 'no repack'}) "
                  f"under the same cap: {best / l['decode_tokens_per_s']:.1f}x")
    for l in llama:
        if "returncode" in l:
            print(f"llama.cpp ({'repack' if l['repack'] else 'no repack'}) under "
                  f"the cap: exit {l['returncode']}"
                  + (" (killed: out of memory in the cgroup)" if l["returncode"] == -9 else ""))
    print(json.dumps({"bandwidth_1mib": bw_mib, "bandwidth_extent": bw_extent,
                      "probe_depth": a.probe_depth,
                      "cgroup": {"path": cgroup.path, "limit_bytes": limit,
                                 "version": getattr(cgroup, "version", None)}
                      if cgroup.path else {"error": cgroup.error},
                      "runs": results, "llama_cpp": llama}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
