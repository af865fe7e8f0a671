#!/usr/bin/env python3
"""bench/decode_prefill.py - decode and prefill of the 3.8 GB qwen3moe
benchmark model, compiled by moec for the host, beside the machine's bounds
and llama.cpp on the same GGUF, all measured in one run.

    python3 bench/decode_prefill.py [--work-dir /var/tmp/moec-bench] [options]

Steps (progress on standard error):
  1. builds bench/membw.c and bench/int8peak.c with clang (-O2 and -m flags
     for the ISA /proc/cpuinfo lists, never -march=native);
  2. synthesizes the benchmark model (moec synth --preset=bench) unless the
     work directory already has it; reads bytes per decoded token and the
     active parameters from `moec inspect`;
  3. times a plain copy of the GGUF (same filesystem, fsync) and the compile
     `moec MODEL --target=host -o OUT` (its outputs fsynced too);
  4. finds or builds the peer's venv (bench/setup_llama_cpp.sh);
  5. ROUNDS times (default 3), interleaved: memory read bandwidth (THREADS
     threads, 256-bit loads, 1 GiB, best of 5 passes, the better of 1 and 4
     streams per thread), the int8 dot-product
     peak (best instruction the host has), OUT/model-run (PROMPT prompt
     tokens then DECODE greedy decode steps, after an untimed warm-up pass)
     and llama.cpp on the same GGUF with the same threads, prompt and steps
     (after the same warm-up); each figure is the best round;
  6. builds bench/decode_beside.c against OUT/libmodel.a and runs it once:
     DECODE decode steps, each between two 1 GiB read passes in the same
     process, and decode's share of the passes beside each step (median
     and quartiles; informative, the target stays against the best pass);
and prints one Markdown table (header and one row) and one JSON object on
standard output. Exit status 0 when every step ran; 1 on a setup error; 2
when moec or llama.cpp failed on the model (the figures that exist are still
printed, with the exact error in the JSON). bench/README.md explains each
figure.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

GB = 1e9


class BenchError(Exception):
    """A step failed; the message says which and why."""


def log(msg):
    print(f"decode_prefill: {msg}", file=sys.stderr, flush=True)


def show(cmd):
    """The command as text, long arguments (the prompt's ids) shortened."""
    return " ".join(a if len(a) <= 120 else f"{a[:60]}...({len(a)} chars)"
                    for a in cmd)


def run(cmd, what, timeout=3600, capture=True, env=None, stream_stderr=False):
    """Runs cmd; returns (stdout, stderr, seconds). Raises BenchError with the
    command's own error output when it fails."""
    log(f"{what}: {show(cmd)}")
    t0 = time.perf_counter()
    try:
        p = subprocess.run(
            cmd,
            stdout=subprocess.PIPE if capture else None,
            stderr=None if stream_stderr else subprocess.PIPE,
            text=True, timeout=timeout, env=env)
    except FileNotFoundError as e:
        raise BenchError(f"{what}: cannot run {cmd[0]}: {e}")
    except subprocess.TimeoutExpired:
        raise BenchError(f"{what}: timed out after {timeout} s: {show(cmd)}")
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        err = (p.stderr or "").strip()
        tail = "\n".join(err.splitlines()[-40:])
        raise BenchError(f"{what} failed (exit status {p.returncode}): "
                         f"{show(cmd)}\n{tail}")
    return p.stdout or "", p.stderr or "", dt


# ---------------------------------------------------------------- machine

def cpu_info():
    model, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model == "unknown":
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError as e:
        raise BenchError(f"cannot read /proc/cpuinfo: {e}")
    return model, flags


def isa_flags(flags):
    """-m flags for the bound programs, from the host's features."""
    if "avx2" not in flags:
        raise BenchError("this host has no AVX2: membw.c and int8peak.c need it")
    m = ["-mavx2"]
    if "fma" in flags:
        m.append("-mfma")
    if {"avx512f", "avx512bw", "avx512_vnni"} <= flags:
        m += ["-mavx512f", "-mavx512bw", "-mavx512vnni"]
    elif "avx_vnni" in flags:
        m.append("-mavxvnni")
    # int8peak.c measures AMX where the kernel grants it to the process (it
    # asks at run time and otherwise measures the vector instructions).
    if {"amx_tile", "amx_int8"} <= flags:
        m += ["-mamx-tile", "-mamx-int8"]
    return m


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return [float(x) for x in f.read().split()[:3]]
    except OSError:
        return None


# ---------------------------------------------------------------- bounds

def build_bound_programs(work, cc, mflags):
    bindir = os.path.join(work, "bin")
    os.makedirs(bindir, exist_ok=True)
    out = {}
    for name in ("membw", "int8peak"):
        exe = os.path.join(bindir, name)
        cmd = [cc, "-O2", *mflags, "-pthread", "-o", exe,
               os.path.join(HERE, name + ".c")]
        run(cmd, f"build {name}")
        out[name] = exe
    return out


# Streams per thread membw reads side by side: one long stream per thread,
# and 4, which reads about a fifth faster on some machines (a Sapphire
# Rapids guest) and is how moec's decode kernels read their weights; the
# bound is the better of the two, so that a kernel never looks closer to
# the machine's bandwidth than it is.
MEMBW_STREAMS = (1, 4)


def measure_bandwidth(exe, threads):
    """Best read bandwidth over MEMBW_STREAMS: (GB/s, line, {streams: GB/s},
    mean GB/s of the best pattern's passes)."""
    best, best_line, by_streams, best_mean = 0.0, None, {}, None
    for streams in MEMBW_STREAMS:
        stdout, _, _ = run([exe, "-t", str(threads), "-s", "1024", "-r", "5",
                            "-p", str(streams)], "memory read bandwidth")
        m = re.search(r"membw: ([0-9.]+) GB/s \(best of \d+; mean ([0-9.]+) GB/s", stdout)
        if not m:
            raise BenchError(f"membw printed no figure: {stdout!r}")
        log(stdout.strip())
        gbps, mean = float(m.group(1)), float(m.group(2))
        by_streams[str(streams)] = gbps
        if gbps > best:
            best, best_line, best_mean = gbps, stdout.strip(), mean
    return best, best_line, by_streams, best_mean


def measure_int8_peak(exe, threads):
    stdout, _, _ = run([exe, "-t", str(threads), "-r", "5"], "int8 dot-product peak")
    m = re.search(r"int8peak: ([0-9.]+) G int8 ops/s \(best of \d+; ([^;]+);", stdout)
    if not m:
        raise BenchError(f"int8peak printed no figure: {stdout!r}")
    log(stdout.strip())
    return float(m.group(1)) * 1e9, m.group(2), stdout.strip()


def measure_beside(work, cc, mflags, outdir, bundle, prompt, steps, threads,
                   streams, bytes_per_token):
    """bench/decode_beside.c on the compiled model: decode steps set against
    the read passes on either side of each, in one process (its header says
    why). Returns its figures and line."""
    exe = os.path.join(work, "bin", "decode_beside")
    run([cc, "-O2", *mflags, "-pthread", f"-I{outdir}", f"-I{HERE}",
         os.path.join(HERE, "decode_beside.c"), os.path.join(outdir, "libmodel.a"),
         "-fuse-ld=lld", "-lstdc++", "-lm", "-luring", "-lxxhash", "-o", exe],
        "build decode_beside")
    stdout, _, _ = run([exe, "-b", str(bytes_per_token), "-n", str(steps),
                        "-t", str(threads), "-p", str(streams),
                        "-i", ",".join(map(str, prompt)), bundle],
                       "decode beside read passes")
    m = re.search(r"median share ([0-9.]+) \(quartiles ([0-9.]+) ([0-9.]+); (\d+) steps.*"
                  r"decode ([0-9.]+) GB/s, passes ([0-9.]+) GB/s, best pass ([0-9.]+) GB/s",
                  stdout)
    if not m:
        raise BenchError(f"decode_beside printed no figure: {stdout!r}")
    log(stdout.strip())
    g = [float(x) for x in m.groups()]
    result = {"median_share": g[0], "share_quartiles": [g[1], g[2]],
              "steps": int(g[3]), "decode_GBps": g[4], "passes_GBps": g[5],
              "best_pass_GBps": g[6], "streams_per_thread": streams,
              "line": stdout.strip()}
    # The steps in quarters by the passes beside them, slowest first.
    q = re.search(r"quarter: passes ([0-9. /]+) GB/s, decode ([0-9. /]+) GB/s, "
                  r"share ([0-9. /]+)", stdout)
    if q:
        result["by_pass_quarter"] = {
            key: [float(x) for x in q.group(i + 1).split("/")]
            for i, key in enumerate(("passes_GBps", "decode_GBps", "share"))}
    return result


# ---------------------------------------------------------------- model

def synthesize(moec, path, vocab):
    tmp = path + ".tmp"
    cmd = [moec, "synth", "--family=qwen3moe", "--preset=bench", "-o", tmp]
    if vocab:
        cmd.insert(4, f"--vocab={vocab}")
    log(f"synthesizing the benchmark model into {path} (about 3.8 GB)")
    try:
        run(cmd, "moec synth", capture=True, stream_stderr=True)
    except BenchError:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    os.replace(tmp, path)


def parse_inspect(text):
    """Figures from `moec inspect`: bytes per token (its own sum: dense
    weights + one embedding row + experts_used x layers experts), vocabulary,
    expert counts, and the active parameters per token (matmul weights a
    token multiplies: every 2-D dense tensor but the embedding table, plus
    experts_used of each layer's experts)."""
    def grab(pattern, cast=int):
        m = re.search(pattern, text, re.M)
        if not m:
            raise BenchError(f"moec inspect: no match for {pattern!r} in its output")
        return cast(m.group(1))

    info = {
        "bytes_per_token": grab(r"^bytes per token\s+.*?\((\d+):"),
        "bytes_per_expert": grab(r"^bytes per expert\s+.*?\((\d+):"),
        "vocab": grab(r"^vocabulary\s+(\d+)"),
        "layers": grab(r"^layers\s+(\d+)"),
        "experts": grab(r"^experts\s+(\d+) routed"),
        "experts_used": grab(r"^experts\s+\d+ routed, top (\d+)"),
        "file_bytes": grab(r"GGUF v\d+, .*?\((\d+) bytes\)"),
    }
    m = re.search(r"^bytes per token\s+.*?dense weights (\d+)", text, re.M)
    info["dense_bytes"] = int(m.group(1)) if m else None
    active = 0
    has_output = False
    for line in text.splitlines():
        m = re.match(r"^\s+(\S+\.weight)\s+(\S+)\s+([0-9x]+)\s+(\d+)\s*$", line)
        if not m:
            continue
        name, shape = m.group(1), [int(d) for d in m.group(3).split("x")]
        if len(shape) < 2:
            continue  # norms: elementwise, not matmul weights
        n = 1
        for d in shape:
            n *= d
        if name == "output.weight":
            has_output = True
        if name == "token_embd.weight":
            continue  # a lookup, not a matmul (unless tied: below)
        if "_exps." in name:
            n = n // info["experts"] * info["experts_used"]
        active += n
    if not has_output:  # tied embeddings: the table is the output head too
        for line in text.splitlines():
            m = re.match(r"^\s+token_embd\.weight\s+\S+\s+([0-9x]+)", line)
            if m:
                n = 1
                for d in m.group(1).split("x"):
                    n *= int(d)
                active += n
    if active == 0:
        raise BenchError("moec inspect: found no tensor table to count parameters")
    info["active_params_per_token"] = active
    return info


def timed_copy(src, dst, fsync=True):
    """A plain copy (16 MiB chunks), fsynced when asked; returns seconds."""
    t0 = time.perf_counter()
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        shutil.copyfileobj(fi, fo, 16 << 20)
        fo.flush()
        if fsync:
            os.fsync(fo.fileno())
    return time.perf_counter() - t0


def fsync_tree(path):
    t0 = time.perf_counter()
    for root, _, files in os.walk(path):
        for f in files:
            fd = os.open(os.path.join(root, f), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - t0


# ---------------------------------------------------------------- runs

TIMING = re.compile(
    r"model-run:\s+(prompt eval time|eval time|load time)\s+=\s+([0-9.]+) ms"
    r"(?:\s*/\s*(\d+)\s+(tokens|runs))?")


def run_moec(outdir, prompt, decode, threads):
    exe = os.path.join(outdir, "model-run")
    # -n N generates N tokens and evaluates N-1 of them: DECODE + 1 gives
    # DECODE timed decode steps. --warmup: first the same prompt and 4
    # decode steps untimed, then a reset, as llama_peer.py gives llama.cpp.
    cmd = [exe, "--prompt-ids", ",".join(map(str, prompt)), "-n", str(decode + 1),
           "-t", str(threads), "--warmup"]
    stdout, stderr, wall = run(cmd, f"moec model-run ({len(prompt)}-token prompt, "
                                    f"{decode} decode steps, {threads} threads)")
    t = {}
    for m in TIMING.finditer(stderr):
        t[m.group(1)] = (float(m.group(2)), int(m.group(3)) if m.group(3) else None)
    if "prompt eval time" not in t or "eval time" not in t:
        raise BenchError(f"model-run printed no llama.cpp-style timings:\n{stderr}")
    p_ms, p_n = t["prompt eval time"]
    e_ms, e_n = t["eval time"]
    if p_n != len(prompt) or e_n != decode:
        raise BenchError(f"model-run timed {p_n} prompt tokens and {e_n} decode "
                         f"runs, expected {len(prompt)} and {decode}:\n{stderr}")
    generated = [int(x) for x in stdout.split()]
    for line in stderr.strip().splitlines():
        if line.startswith("model-run:"):
            log(line)
    return {
        "load_s": t["load time"][0] / 1e3 if "load time" in t else None,
        "prefill_s": p_ms / 1e3,
        "prefill_tokens_per_s": p_n / (p_ms / 1e3),
        "decode_s": e_ms / 1e3,
        "decode_tokens_per_s": e_n / (e_ms / 1e3),
        "wall_s": wall,
        "generated": generated,
    }


def llama_venv(args):
    if args.llama_venv:
        return args.llama_venv
    env = dict(os.environ)
    env.setdefault("MOEC_BENCH_DIR", args.work_dir)
    stdout, _, _ = run(["bash", os.path.join(HERE, "setup_llama_cpp.sh")],
                       "llama.cpp peer setup", stream_stderr=True, env=env,
                       timeout=7200)
    lines = stdout.strip().splitlines()
    if not lines:
        raise BenchError("setup_llama_cpp.sh printed no venv path")
    return lines[-1].strip()


def run_llama(venv, model, prompt, decode, threads, mmap):
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        raise BenchError(f"no python in the llama.cpp venv {venv}")
    cmd = [py, os.path.join(HERE, "llama_peer.py"), "--model", model,
           "--prompt-ids", ",".join(map(str, prompt)), "--decode", str(decode),
           "--threads", str(threads)]
    if not mmap:
        cmd.append("--no-mmap")
    stdout, stderr, _ = run(cmd, f"llama.cpp ({len(prompt)}-token prompt, "
                                 f"{decode} decode steps, {threads} threads)")
    for line in stderr.splitlines():
        if line.startswith("llama_peer:"):
            log(line)
    try:
        return json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BenchError(f"llama_peer.py printed no JSON:\n{stdout}\n{stderr[-2000:]}")


def prompt_ids(n, vocab, seed=20240601):
    """n deterministic pseudo-random ids in [3, vocab): no unk/bos/eos."""
    out, x = [], seed
    for _ in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        out.append(3 + (x >> 33) % (vocab - 3))
    return out


def common_prefix(a, b):
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


# ---------------------------------------------------------------- report

def fmt(x, spec):
    return "n/a" if x is None else format(x, spec)


def ratio(a, b):
    return a / b if a is not None and b else None


def speed_figures(bpt, ops_per_token, bw, peak, dec, pre, ldec, lpre):
    """One run's figures from its best rounds: decode and prefill against
    the bounds and against llama.cpp (None where a side is missing)."""
    eff_bw = dec * bpt / GB if dec else None
    pre_ops = pre * ops_per_token if pre else None
    lpre_ops = lpre * ops_per_token if lpre else None
    return {
        "decode_tokens_per_s": dec,
        "prefill_tokens_per_s": pre,
        "weight_bytes_per_token": bpt,
        "decode_effective_GBps": eff_bw,
        "decode_share_of_read_bandwidth": ratio(eff_bw, bw),
        "read_bandwidth_GBps": bw,
        "prefill_ops_per_s": pre_ops,
        "prefill_share_of_int8_peak": ratio(pre_ops, peak),
        "int8_peak_ops_per_s": peak,
        "llama_cpp_decode_tokens_per_s": ldec,
        "llama_cpp_prefill_tokens_per_s": lpre,
        "llama_cpp_decode_effective_GBps": ldec * bpt / GB if ldec else None,
        "llama_cpp_decode_share_of_read_bandwidth":
            ratio(ldec * bpt / GB if ldec else None, bw),
        "llama_cpp_prefill_share_of_int8_peak": ratio(lpre_ops, peak),
        "decode_moec_over_llama_cpp": ratio(dec, ldec),
        "prefill_moec_over_llama_cpp": ratio(pre, lpre),
    }


# The Markdown row's leading columns (remote/summarize.py prints them too).
SPEED_HEADER = ["machine", "threads", "decode tok/s", "weight MiB/token",
                "decode GB/s (share of read BW)", "read BW GB/s", "prefill tok/s",
                "prefill G ops/s (share of int8 peak)", "int8 peak G ops/s",
                "llama.cpp decode tok/s", "llama.cpp prefill tok/s",
                "decode moec/llama.cpp", "prefill moec/llama.cpp"]


def speed_cells(machine, threads, fig):
    """SPEED_HEADER's cells for speed_figures' `fig`."""
    share = fig["decode_share_of_read_bandwidth"]
    pshare = fig["prefill_share_of_int8_peak"]
    pre_ops, peak = fig["prefill_ops_per_s"], fig["int8_peak_ops_per_s"]
    return [
        machine, str(threads), fmt(fig["decode_tokens_per_s"], ".2f"),
        fmt(fig["weight_bytes_per_token"] / 2**20, ".1f"),
        # One decimal: a share just under the 90% target must not print
        # as 90%.
        f"{fmt(fig['decode_effective_GBps'], '.1f')} "
        f"({fmt(share and share * 100, '.1f')}%)",
        fmt(fig["read_bandwidth_GBps"], ".1f"), fmt(fig["prefill_tokens_per_s"], ".1f"),
        f"{fmt(pre_ops and pre_ops / 1e9, '.0f')} "
        f"({fmt(pshare and pshare * 100, '.1f')}%)",
        fmt(peak and peak / 1e9, ".0f"), fmt(fig["llama_cpp_decode_tokens_per_s"], ".2f"),
        fmt(fig["llama_cpp_prefill_tokens_per_s"], ".1f"),
        fmt(fig["decode_moec_over_llama_cpp"], ".2f"),
        fmt(fig["prefill_moec_over_llama_cpp"], ".2f"),
    ]


def main():
    ap = argparse.ArgumentParser(
        description="moec decode/prefill benchmark (bench/README.md)")
    ap.add_argument("--work-dir", default=os.environ.get("MOEC_BENCH_DIR",
                                                         "/var/tmp/moec-bench"),
                    help="models, compiled output, venv (default "
                         "$MOEC_BENCH_DIR or /var/tmp/moec-bench)")
    ap.add_argument("--moec", default=os.path.join(REPO, "build", "bin", "moec"))
    ap.add_argument("--model", help="use this GGUF instead of synthesizing "
                                    "WORK/qwen3moe-bench.gguf")
    ap.add_argument("--vocab", default=os.path.join(
        REPO, "..", "shared", "testdata", "tokenizers", "ggml-vocab-llama-spm.gguf"),
        help="tokenizer GGUF for synth (llama.cpp needs one to load the model)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=128, help="prefill tokens")
    ap.add_argument("--decode", type=int, default=64, help="decode steps")
    ap.add_argument("--max-batch", type=int,
                    help="pass --max-batch=N to moec (default: moec's own)")
    ap.add_argument("--reuse-compiled", action="store_true",
                    help="skip the compile (and copy) when WORK/out has model-run")
    ap.add_argument("--llama-venv", help="llama-cpp-python venv (default: "
                                         "what bench/setup_llama_cpp.sh gives)")
    ap.add_argument("--llama-no-mmap", action="store_true",
                    help="llama.cpp reads the model instead of mmap")
    ap.add_argument("--skip-llama", action="store_true")
    ap.add_argument("--rounds", type=int, default=3,
                    help="measure bounds, moec and llama.cpp this many times, "
                         "interleaved; each figure is the best (default 3)")
    ap.add_argument("--cc", default=os.environ.get("CC", "clang-22"))
    ap.add_argument("--json-out", help="also write the JSON object here")
    ap.add_argument("--wait-for-quiet", type=float, default=0, metavar="SECONDS",
                    help="first wait up to SECONDS for the 1-minute load "
                         "average to fall below half the CPUs")
    args = ap.parse_args()

    if args.rounds < 1 or args.threads < 1 or args.prompt < 1 or args.decode < 1:
        raise BenchError("--rounds, --threads, --prompt and --decode must be at least 1")
    work = os.path.abspath(args.work_dir)
    os.makedirs(work, exist_ok=True)
    if not os.path.exists(args.moec):
        raise BenchError(f"no moec at {args.moec} (build it, or pass --moec)")
    if shutil.which(args.cc) is None and not os.path.exists(args.cc):
        raise BenchError(f"no C compiler '{args.cc}' (pass --cc)")

    model_name, flags = cpu_info()
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    if args.wait_for_quiet > 0:
        limit = 0.5 * (os.cpu_count() or 1)
        deadline = time.monotonic() + args.wait_for_quiet
        log(f"waiting up to {args.wait_for_quiet:.0f} s for a load average below {limit}")
        while (loadavg() or [0])[0] >= limit and time.monotonic() < deadline:
            time.sleep(10)
    load_before = loadavg()
    log(f"machine: {model_name}, {os.cpu_count()} CPUs, {args.threads} threads "
        f"used; load average {load_before}")
    if load_before and load_before[0] > 0.5 * (os.cpu_count() or 1):
        log("warning: the machine is busy (load average above half its CPUs): "
            "figures will be low and noisy")

    result = {
        "benchmark": "decode_prefill",
        "started": started,
        "machine": {
            "cpu": model_name,
            "cpus": os.cpu_count(),
            "threads_used": args.threads,
            "kernel": platform.release(),
            "isa": sorted(f for f in flags if f in {
                "avx", "avx2", "fma", "f16c", "bmi2", "avx_vnni", "avx512f",
                "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_vbmi",
                "amx_tile", "amx_int8"}),
            "load_average_before": load_before,
        },
        "errors": {},
    }

    # 1. the bound programs (measured in each round below)
    mflags = isa_flags(flags)
    exes = build_bound_programs(work, args.cc, mflags)

    # 2. model
    model = os.path.abspath(args.model) if args.model else os.path.join(
        work, "qwen3moe-bench.gguf")
    if not os.path.exists(model):
        if args.model:
            raise BenchError(f"no model at {model}")
        vocab = os.path.abspath(args.vocab) if args.vocab else None
        if vocab and not os.path.exists(vocab):
            log(f"warning: no tokenizer at {vocab}: synthesizing without one "
                "(llama.cpp may refuse the model)")
            vocab = None
        synthesize(args.moec, model, vocab)
    else:
        log(f"reusing {model}")
    inspect_out, _, _ = run([args.moec, "inspect", model], "moec inspect")
    info = parse_inspect(inspect_out)
    ops_per_token = 2 * info["active_params_per_token"]
    result["model"] = {
        "path": model, **info, "ops_per_token": ops_per_token,
        "prompt_tokens": args.prompt, "decode_steps": args.decode,
    }
    log(f"model: {info['file_bytes'] / 2**30:.2f} GiB, "
        f"{info['bytes_per_token'] / 2**20:.1f} MiB of weights per decoded token, "
        f"{info['active_params_per_token'] / 1e9:.3f} G active parameters per token")
    prompt = prompt_ids(args.prompt, info["vocab"])

    # 3. copy and compile
    outdir = os.path.join(work, "out")
    moec = None
    compile_fig = {}
    reuse = args.reuse_compiled and os.path.exists(os.path.join(outdir, "model-run"))
    if reuse:
        log(f"reusing the compiled model in {outdir} (no compile or copy timing)")
    else:
        copy_path = os.path.join(work, "copy-of-model.gguf.tmp")
        try:
            log("timing a plain copy of the model (fsynced)")
            copy_s = timed_copy(model, copy_path, fsync=True)
        finally:
            if os.path.exists(copy_path):
                os.unlink(copy_path)
        log(f"copy: {copy_s:.1f} s ({info['file_bytes'] / copy_s / 1e6:.0f} MB/s)")
        if os.path.exists(outdir):
            shutil.rmtree(outdir)
        cmd = [args.moec, model, "--target=host", "-o", outdir]
        if args.max_batch:
            cmd.append(f"--max-batch={args.max_batch}")
        try:
            _, cerr, compile_s = run(cmd, "moec compile")
            sync_s = fsync_tree(outdir)
            compile_fig = {
                "compile_s": compile_s, "compile_fsync_s": sync_s,
                "compile_total_s": compile_s + sync_s, "copy_s": copy_s,
                "compile_over_copy": (compile_s + sync_s) / copy_s,
                "command": " ".join(cmd),
            }
            # moec's own split of its last step: the bundle (the repacked
            # weights, bound by the storage) and the code (one core), which
            # run side by side.
            m = re.search(r"wrote model\.moeb in ([0-9.]+) s; generated and linked "
                          r"the code in ([0-9.]+) s", cerr)
            if m:
                compile_fig.update({
                    "repack_s": float(m.group(1)), "codegen_s": float(m.group(2)),
                    "repack_over_copy": float(m.group(1)) / copy_s})
            log(f"compile: {compile_s:.1f} s + fsync of its outputs {sync_s:.1f} s "
                f"(copy {copy_s:.1f} s)"
                + (f"; of it, model.moeb {compile_fig['repack_s']:.1f} s beside "
                   f"the code {compile_fig['codegen_s']:.1f} s" if m else ""))
        except BenchError as e:
            result["errors"]["moec_compile"] = str(e)
            compile_fig = {"copy_s": copy_s, "command": " ".join(cmd)}
            log(f"error: {e}")
    result["compile"] = compile_fig

    # 4. the peer's venv (built once; reused when its ISA is right)
    venv = None
    if not args.skip_llama:
        try:
            venv = llama_venv(args)
        except BenchError as e:
            result["errors"]["llama_cpp"] = str(e)
            log(f"error: {e}")

    # 5. rounds: bounds, moec, llama.cpp, one after the other; each figure
    # is the best of the rounds (another process on the machine only ever
    # lowers a figure, and rounds interleave so that neither side gets the
    # quiet moments alone).
    rounds = []
    bw = peak = 0.0
    bw_line = peak_line = peak_kernel = None
    moec = llama = None
    for r in range(1, args.rounds + 1):
        log(f"round {r} of {args.rounds} (load average {loadavg()})")
        rd = {"load_average": loadavg()}
        b, b_line, b_streams, b_mean = measure_bandwidth(exes["membw"], args.threads)
        k, k_kernel, k_line = measure_int8_peak(exes["int8peak"], args.threads)
        rd["read_bandwidth_GBps"], rd["int8_peak_ops_per_s"] = b, k
        rd["read_bandwidth_GBps_by_streams_per_thread"] = b_streams
        # The passes' mean beside their best: the bound is the best ~25 ms
        # pass, decode a rate over seconds, and on a shared machine the two
        # differ by the neighbours' share (informative; the target is
        # against the best).
        rd["read_bandwidth_mean_GBps"] = b_mean
        if b > bw:
            bw, bw_line = b, b_line
        if k > peak:
            peak, peak_kernel, peak_line = k, k_kernel, k_line
        if "moec_compile" not in result["errors"] and "moec_run" not in result["errors"]:
            try:
                m = run_moec(outdir, prompt, args.decode, args.threads)
                rd["moec"] = {x: m[x] for x in ("prefill_tokens_per_s", "decode_tokens_per_s", "load_s")}
                if moec is None:
                    moec = dict(m, rounds=[])
                moec["rounds"].append(rd["moec"])
                for x in ("prefill", "decode"):
                    if m[f"{x}_tokens_per_s"] >= moec[f"{x}_tokens_per_s"]:
                        moec[f"{x}_s"] = m[f"{x}_s"]
                        moec[f"{x}_tokens_per_s"] = m[f"{x}_tokens_per_s"]
            except BenchError as e:
                result["errors"]["moec_run"] = str(e)
                log(f"error: {e}")
        if "moec" in rd:
            gbps = rd["moec"]["decode_tokens_per_s"] * info["bytes_per_token"] / GB
            rd["moec"]["decode_share_of_read_bandwidth"] = ratio(gbps, b)
            rd["moec"]["decode_share_of_mean_read_bandwidth"] = ratio(gbps, b_mean)
            log(f"decode: {gbps:.1f} GB/s of weights, {100 * gbps / b:.0f}% of this "
                f"round's best read pass ({b:.1f} GB/s), {100 * gbps / b_mean:.0f}% "
                f"of its passes' mean ({b_mean:.1f} GB/s)")
        if venv and "llama_cpp" not in result["errors"]:
            try:
                l = run_llama(venv, model, prompt, args.decode, args.threads,
                              not args.llama_no_mmap)
                rd["llama_cpp"] = {x: l[x] for x in ("prefill_tokens_per_s", "decode_tokens_per_s", "load_s")}
                if llama is None:
                    llama = dict(l, venv=venv, rounds=[])
                llama["rounds"].append(rd["llama_cpp"])
                for x in ("prefill", "decode"):
                    if l[f"{x}_tokens_per_s"] >= llama[f"{x}_tokens_per_s"]:
                        llama[f"{x}_s"] = l[f"{x}_s"]
                        llama[f"{x}_tokens_per_s"] = l[f"{x}_tokens_per_s"]
            except BenchError as e:
                result["errors"]["llama_cpp"] = str(e)
                log(f"error: {e}")
        rounds.append(rd)
    # 6. decode beside the read passes (informative)
    if moec is not None and "moec_run" not in result["errors"]:
        by = {}
        for rd in rounds:
            for st, g in rd["read_bandwidth_GBps_by_streams_per_thread"].items():
                by[st] = max(by.get(st, 0.0), g)
        streams = int(max(by, key=by.get)) if by else 4
        try:
            result["decode_beside"] = measure_beside(
                work, args.cc, mflags, outdir, os.path.join(outdir, "model.moeb"),
                prompt, max(4, args.decode), args.threads, streams,
                info["bytes_per_token"])
        except BenchError as e:
            result["errors"]["decode_beside"] = str(e)
            log(f"error: {e}")
    result["bounds"] = {
        "read_bandwidth_GBps": bw, "membw": bw_line,
        "int8_peak_ops_per_s": peak, "int8_kernel": peak_kernel,
        "int8peak": peak_line, "cflags": ["-O2", *mflags, "-pthread"],
        "cc": args.cc,
    }
    result["rounds"] = rounds
    result["moec"] = moec
    result["llama_cpp"] = llama

    # figures
    bpt = info["bytes_per_token"]
    dec = moec["decode_tokens_per_s"] if moec else None
    pre = moec["prefill_tokens_per_s"] if moec else None
    ldec = llama["decode_tokens_per_s"] if llama else None
    lpre = llama["prefill_tokens_per_s"] if llama else None
    fig = speed_figures(bpt, ops_per_token, bw, peak, dec, pre, ldec, lpre)
    fig.update({
        "compile_s": compile_fig.get("compile_total_s"),
        "copy_s": compile_fig.get("copy_s"),
        "compile_over_copy": compile_fig.get("compile_over_copy"),
        "repack_over_copy": compile_fig.get("repack_over_copy"),
        "llama_cpp_system_info": llama["system_info"] if llama else None,
        # Informative: decode against the passes read beside its steps.
        "decode_share_of_read_passes_beside":
            result.get("decode_beside", {}).get("median_share"),
    })
    if moec and llama:
        fig["greedy_tokens_agreeing"] = common_prefix(moec["generated"], llama["generated"])
    share = fig["decode_share_of_read_bandwidth"]
    pratio = fig["prefill_moec_over_llama_cpp"]
    cratio = fig["compile_over_copy"]
    fig["targets"] = {
        "decode_share_of_read_bandwidth >= 0.90": None if share is None else share >= 0.90,
        "prefill_moec_over_llama_cpp >= 2": None if pratio is None else pratio >= 2.0,
        "compile_over_copy <= 2": None if cratio is None else cratio <= 2.0,
        "repack_over_copy <= 2": (None if fig["repack_over_copy"] is None
                                  else fig["repack_over_copy"] <= 2.0),
    }
    result["figures"] = fig
    result["machine"]["load_average_after"] = loadavg()

    header = SPEED_HEADER + ["compile s", "copy s", "compile/copy",
                             "llama.cpp system info"]
    row = speed_cells(model_name, args.threads, fig) + [
        fmt(fig["compile_s"], ".1f"), fmt(fig["copy_s"], ".1f"), fmt(cratio, ".2f"),
        (fig["llama_cpp_system_info"] or "n/a").replace("|", "\\|"),
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    print("| " + " | ".join(row) + " |")
    text = json.dumps(result, indent=1)
    print(text)
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(text + "\n")
    if result["errors"]:
        log("finished with errors: " + ", ".join(result["errors"]))
        return 2
    log("done")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        log(f"error: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
