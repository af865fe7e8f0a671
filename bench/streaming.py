#!/usr/bin/env python3
"""Expert streaming on real and on random routing: cache hit rate per policy
beside the offline optimum (Belady) on the same trace, reads, stall time,
prefetch precision/recall, speed. Run by hand (bench/README.md):

    python3 bench/streaming.py --moec build/bin/moec [--text FILE] [--work DIR]

Models: the example model (examples/model, trained: real routing) and a
random-weight twin of the same shape and formats (`moec synth`: routing
near uniform). Each is compiled once; the text (default: the committed
held-out excerpt) is scored with `model-run --perplexity -c 128` under each
memory budget, policy and prefetch setting, with --stats. The Belady
figure replays the routing trace of the all-resident run (the same routing:
streaming does not change results) with the same cache size and the same
batches, evicting the expert used farthest in the future; LRU is replayed
too, as a check on the simulation against the runtime's own count.
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "model", "moe-example-f16.gguf")
EXCERPT = os.path.join(ROOT, "test", "e2e", "data",
                       "python-docs-heldout-excerpt.txt")
WINDOW = 128
MAX_BATCH = 64


def sh(cmd, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr}")
    return out


def run(model_run, text, budget, extra, stats, batch):
    cmd = [model_run, "--perplexity", "-f", text, "-c", str(WINDOW), "-t", "2",
           "--stats", stats, "-b", str(batch)] + extra
    if budget:
        cmd += ["--memory-budget", str(budget)]
    sh(cmd)
    return json.load(open(stats))


def accesses(trace, layers, batch):
    """Per forward call and layer, the set of experts requested, in order:
    windows of WINDOW tokens evaluated in batches of `batch`."""
    by_token = {}
    for seq, pos, layer, *experts in trace:
        by_token.setdefault((seq, pos), {})[layer] = experts
    out = []
    for seq in sorted({s for s, _ in by_token}):
        positions = sorted(p for s, p in by_token if s == seq)
        for start in range(0, len(positions), batch):
            chunk = positions[start:start + batch]
            for layer in range(layers):
                wanted = set()
                for p in chunk:
                    wanted.update(by_token[(seq, p)].get(layer, []))
                if wanted:
                    out.append([(layer, e) for e in sorted(wanted)])
    return out


def simulate(requests, slots, policy):
    """Hit rate of a cache of `slots` experts; a request's experts are all in
    use together (never evicted for each other)."""
    cache, last, hits, misses = set(), {}, 0, 0
    for i, req in enumerate(requests):
        using = set(req)
        for key in req:
            if key in cache:
                hits += 1
            else:
                misses += 1
                if len(cache) >= slots:
                    candidates = [k for k in cache if k not in using]
                    if policy == "lru":
                        victim = min(candidates, key=lambda k: last[k])
                    else:
                        def next_use(k):
                            for j in range(i + 1, len(requests)):
                                if k in requests[j]:
                                    return j
                            return float("inf")
                        victim = max(candidates, key=next_use)
                    cache.discard(victim)
                cache.add(key)
            last[key] = i
    return hits / max(hits + misses, 1)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--moec", required=True)
    p.add_argument("--text", default=EXCERPT)
    p.add_argument("--work", default="/var/tmp/moec-bench/streaming")
    p.add_argument("--batch", type=int, default=1,
                   help="tokens per forward call (1: token by token, the "
                        "access pattern of decoding)")
    args = p.parse_args()
    os.makedirs(args.work, exist_ok=True)
    random_gguf = os.path.join(args.work, "random-twin.gguf")
    sh([args.moec, "synth", "--family=qwen3moe", "--layers=6", "--hidden=256",
        "--heads=4", "--kv-heads=2", "--head-dim=64", "--experts=16",
        "--experts-used=4", "--expert-ffn=256", "--vocab=" + EXAMPLE,
        "--experts-type=f16", "--attention-type=f16", "--embeddings-type=f16",
        "-o", random_gguf])
    print(f"text: {args.text} ({os.path.getsize(args.text)} bytes), windows "
          f"of {WINDOW} tokens, {args.batch} token(s) per forward call; "
          f"{os.cpu_count()} CPUs")
    for name, gguf in [("example (trained)", EXAMPLE),
                       ("random twin", random_gguf)]:
        out = os.path.join(args.work, name.split()[0])
        sh([args.moec, gguf, "--target=host", "-o", out, "--quiet"])
        model_run = os.path.join(out, "model-run")
        stats = os.path.join(args.work, "stats.json")
        base = run(model_run, args.text, None, [], stats, args.batch)
        layers, experts = base["model"]["layers"], base["model"]["experts"]
        k = base["model"]["top_k"]
        trace = base["routing"]["trace"]
        print(f"\n{name}: {base['routing']['tokens']} tokens, repeat "
              f"probability per layer {base['routing']['repeat_probability']}, "
              f"all resident {base['run']['prompt_tokens_per_s']:.0f} tok/s")
        print("| cache (experts of 96) | policy | prefetch | hit rate | Belady "
              "| LRU replayed | reads | MB read | stall s | precision | recall "
              "| tok/s |")
        print("| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | "
              "---: | ---: | ---: |")
        # The smallest budget the runtime takes, then more room.
        fixed = None
        for slots in [7, 12, 24, 48]:
            if fixed is None:
                probe = subprocess.run(
                    [model_run, "--perplexity", "-f", args.text, "-c",
                     str(WINDOW), "--memory-budget", "1K"],
                    capture_output=True, text=True).stderr
                need = int(probe.split("needs at least ")[1].split()[0])
                extent = int(probe.split("experts of ")[1].split()[0])
                fixed = need - k * extent
            budget = fixed + slots * extent
            batch = MAX_BATCH if slots >= experts else max(1, slots // k)
            batch = min(batch, args.batch, MAX_BATCH)
            reqs = accesses(trace, layers, batch)
            belady = simulate(reqs, slots, "belady")
            lru_sim = simulate(reqs, slots, "lru")
            for policy in ["lru", "lfu"]:
                for prefetch in [False, True]:
                    extra = ["--cache-policy", policy]
                    if not prefetch:
                        extra.append("--no-prefetch")
                    d = run(model_run, args.text, budget, extra, stats,
                            args.batch)
                    e = d["experts"]
                    pf = e["prefetch"]
                    print(f"| {slots} | {policy} | {'on' if prefetch else 'off'} "
                          f"| {e['hit_rate']:.3f} | {belady:.3f} | "
                          f"{lru_sim if policy == 'lru' and not prefetch else float('nan'):.3f} | "
                          f"{e['reads']} | {e['bytes_read'] / 1e6:.1f} | "
                          f"{e['stall_seconds']:.3f} | "
                          f"{pf['precision'] if pf['precision'] is not None else '-'} | "
                          f"{pf['recall'] if pf['recall'] is not None else '-'} | "
                          f"{d['run']['prompt_tokens_per_s']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
