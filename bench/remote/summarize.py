#!/usr/bin/env python3
"""The benchmark's row from a bench/remote/run.sh log.

    python3 bench/remote/summarize.py remote-bench.log [--json-out FILE]

Same figures as decode_prefill.py, taken the same way: each the best of the
rounds (membw's and int8peak's best pass, moec's and llama-bench's best
round), bytes and operations per token from `moec inspect` of the model
there. The peer is llama-bench (llama.cpp's own benchmark: pp128 and tg64,
each after its warm-up) rather than llama_peer.py through Python, and no
compile time is measured (the code was compiled on the packing machine).
Prints a Markdown header and row, then the JSON.
"""
import argparse
import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import decode_prefill as bench  # noqa: E402

GB = bench.GB


def parse(text):
    sections = re.split(r"^== ", text, flags=re.M)
    machine, inspect, rounds = {}, None, []
    for s in sections:
        head, _, body = s.partition("\n")
        if head.startswith("machine"):
            m = re.search(r"^model name\s*:\s*(.+)$", body, re.M)
            machine["cpu"] = m.group(1).strip() if m else "unknown"
            m = re.search(r"^cpus (\d+)", body, re.M)
            machine["cpus"] = int(m.group(1)) if m else None
            m = re.search(r"^threads (\d+)", body, re.M)
            machine["threads"] = int(m.group(1)) if m else None
            m = re.search(r"^target (\S+)", body, re.M)
            machine["target"] = m.group(1) if m else None
            m = re.search(r"^flags (.*)$", body, re.M)
            machine["flags"] = sorted(set(m.group(1).split()) & {
                "avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                "avx_vnni", "avx512_bf16", "amx_tile"}) if m else []
        elif head.startswith("inspect"):
            inspect = body
        elif head.startswith("round"):
            r = {"load": head.split("load", 1)[1].strip() if "load" in head else None}
            # membw runs with 1 and 4 streams per thread (older runs: 1):
            # the better pattern is the round's bound.
            passes = [(float(a), float(b)) for a, b in re.findall(
                r"membw: ([0-9.]+) GB/s \(best of \d+; mean ([0-9.]+)", body)]
            r["read_bandwidth_GBps"], r["read_bandwidth_mean_GBps"] = (
                max(passes) if passes else (None, None))
            m = re.search(r"int8peak: ([0-9.]+) G int8 ops/s \(best of \d+; ([^;]+);", body)
            r["int8_peak_ops_per_s"] = float(m.group(1)) * 1e9 if m else None
            r["int8_kernel"] = m.group(2) if m else None
            m = re.search(r"prompt eval time.*?([0-9.]+) tokens per second", body)
            r["prefill_tokens_per_s"] = float(m.group(1)) if m else None
            m = re.search(r"^model-run:\s+eval time.*?([0-9.]+) tokens per second", body, re.M)
            r["decode_tokens_per_s"] = float(m.group(1)) if m else None
            m = re.search(r"^ids (.*)$", body, re.M)
            r["generated"] = [int(x) for x in m.group(1).split()] if m else []
            for test, key in (("pp128", "llama_cpp_prefill_tokens_per_s"),
                              ("tg64", "llama_cpp_decode_tokens_per_s")):
                m = re.search(r"\|\s+%s\s+\|\s+([0-9.]+)" % test, body)
                r[key] = float(m.group(1)) if m else None
            m = re.search(r"^build: (.*)$", body, re.M)
            r["llama_cpp_build"] = m.group(1).strip() if m else None
            rounds.append(r)
    return machine, inspect, rounds


def best(rounds, key):
    values = [r[key] for r in rounds if r.get(key) is not None]
    return max(values) if values else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("log")
    ap.add_argument("--json-out")
    args = ap.parse_args()
    with open(args.log, errors="replace") as f:
        machine, inspect, rounds = parse(f.read())
    if not inspect or not rounds:
        sys.exit(f"summarize.py: {args.log} has no inspect section or no rounds: "
                 "did run.sh finish?")
    info = bench.parse_inspect(inspect)
    bpt, ops = info["bytes_per_token"], 2 * info["active_params_per_token"]
    bw, peak = best(rounds, "read_bandwidth_GBps"), best(rounds, "int8_peak_ops_per_s")
    dec, pre = best(rounds, "decode_tokens_per_s"), best(rounds, "prefill_tokens_per_s")
    ldec = best(rounds, "llama_cpp_decode_tokens_per_s")
    lpre = best(rounds, "llama_cpp_prefill_tokens_per_s")
    fig = bench.speed_figures(bpt, ops, bw, peak, dec, pre, ldec, lpre)
    # Per round: the decode share against that round's own membw.
    fig["decode_share_per_round"] = [
        bench.ratio(r["decode_tokens_per_s"] * bpt / GB
                    if r["decode_tokens_per_s"] else None, r["read_bandwidth_GBps"])
        for r in rounds]
    fig["prefill_ratio_per_round"] = [
        bench.ratio(r["prefill_tokens_per_s"], r["llama_cpp_prefill_tokens_per_s"])
        for r in rounds]
    header = bench.SPEED_HEADER + ["peer"]
    row = bench.speed_cells(machine.get("cpu", "unknown"), machine.get("threads"), fig) + [
        "llama-bench " + (rounds[0].get("llama_cpp_build") or "?")]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    print("| " + " | ".join(row) + " |")
    result = {"benchmark": "decode_prefill (remote)", "machine": machine,
              "model": info, "rounds": rounds, "figures": fig}
    text = json.dumps(result, indent=1)
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
