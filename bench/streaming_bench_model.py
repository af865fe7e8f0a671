#!/usr/bin/env python3
"""Decoding the 3.8 GB benchmark model with its experts streamed under
--memory-budget (default 1 GiB), beside this disk's O_DIRECT read bandwidth
measured in the same run. Run by hand (bench/README.md):

    python3 bench/streaming_bench_model.py --moec build/bin/moec \\
        --model /var/tmp/moec-bench/qwen3moe-bench.gguf [--budget 1GiB]

Prints one markdown row per I/O engine and the JSON behind them:
tokens/s, bytes read per token, hit rate, stall per token, and the storage
bound (the better O_DIRECT bandwidth -- 1 MiB reads at queue depth 8, or
reads of the runtime's own size at depth 8 -- divided by bytes read per
token). The page cache cannot hide the budget: the runtime reads with
O_DIRECT, and the bandwidth probe drops nothing it needs.
"""
import argparse
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


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--moec", required=True)
    p.add_argument("--model", default="/var/tmp/moec-bench/qwen3moe-bench.gguf")
    p.add_argument("--work", default="/var/tmp/moec-bench/streaming-bench")
    p.add_argument("--budget", default="1GiB")
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
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
    bw_mib = direct_bandwidth(bundle, 1 << 20)
    bw_extent = direct_bandwidth(bundle, extent_aligned)
    bandwidth = max(bw_mib, bw_extent)
    rows, results = [], []
    prompt = ",".join(str(i * 97 % 31000 + 10) for i in range(8))
    for io in ["uring", "pread"]:
        stats = os.path.join(a.work, f"stats-{io}.json")
        r = subprocess.run([os.path.join(out, "model-run"), "--prompt-ids", prompt,
                            "-n", str(a.tokens), "-t", str(a.threads), "-b", "1",
                            "--memory-budget", a.budget, "--io", io,
                            "--stats", stats], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(r.stderr)
        d = json.load(open(stats))
        e, run = d["experts"], d["run"]
        tokens = run["prompt_tokens"] + run["generated_tokens"] - 1
        per_token = e["bytes_read"] / tokens
        tok_s = tokens / e["forward_seconds"]
        bound = bandwidth / per_token
        row = (f"| {io} | {a.budget} | {tok_s:.2f} | {per_token / 1e6:.1f} MB | "
               f"{e['hit_rate']:.3f} | {1e3 * e['stall_seconds'] / tokens:.0f} ms | "
               f"{bound:.2f} | {tok_s / bound:.0%} | {d['memory']['peak_rss_bytes'] >> 20} MiB |")
        rows.append(row)
        results.append({"io": io, "tokens_per_s": tok_s,
                        "bytes_read_per_token": per_token, "hit_rate": e["hit_rate"],
                        "stall_s_per_token": e["stall_seconds"] / tokens,
                        "storage_bound_tokens_per_s": bound,
                        "fraction_of_bound": tok_s / bound,
                        "peak_rss_bytes": d["memory"]["peak_rss_bytes"],
                        "prefetch": e["prefetch"]})
    print(f"bundle {os.path.getsize(bundle) / 2**30:.2f} GiB, extent "
          f"{extent_aligned} bytes; O_DIRECT random reads at depth 8: 1 MiB "
          f"{bw_mib / 1e6:.0f} MB/s, extent-sized {bw_extent / 1e6:.0f} MB/s; "
          f"{a.tokens} tokens decoded one per call, {a.threads} threads")
    print("| engine | budget | tok/s | read/token | hit rate | stall/token | "
          "storage bound tok/s | of bound | peak RSS |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))
    print(json.dumps({"bandwidth_1mib": bw_mib, "bandwidth_extent": bw_extent,
                      "runs": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
