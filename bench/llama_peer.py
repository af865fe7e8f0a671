#!/usr/bin/env python3
"""bench/llama_peer.py - llama.cpp on the benchmark's GGUF: the peer's figures.

Run with the python of the venv that bench/setup_llama_cpp.sh made (it
imports llama_cpp); bench/decode_prefill.py does that. Through
llama-cpp-python's low-level API (llama.cpp's C API): loads the model, warms
up once (the same prompt and a few decode steps: page faults, thread start),
clears the KV cache, then times a prefill of the prompt in one batch and
--decode greedy single-token decode steps, each fed the argmax of the last
logits (as moec's model-run does). Prints one JSON object on stdout:
prefill/decode seconds and tokens/s, the generated ids, load time and
llama.cpp's system-info line.
"""

import argparse
import ctypes
import json
import sys
import time

try:
    import numpy as np
    import llama_cpp
except ImportError as e:  # pragma: no cover - a setup problem
    sys.exit(f"llama_peer: error: {e} (run with the python of the venv from "
             "bench/setup_llama_cpp.sh)")


def log(msg):
    print(f"llama_peer: {msg}", file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt-ids", required=True,
                    help="comma-separated token ids")
    ap.add_argument("--decode", type=int, default=64,
                    help="decode steps timed (default 64)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-repack", action="store_true",
                    help="no CPU_REPACK buffers (use_extra_bufts off): the "
                         "weights stay in the mmapped file")
    ap.add_argument("--warmup-decode", type=int, default=4)
    ap.add_argument("--no-mmap", action="store_true",
                    help="read the model into memory instead of mmap "
                         "(llama.cpp's default is mmap)")
    args = ap.parse_args()

    prompt = [int(t) for t in args.prompt_ids.split(",") if t]
    if not prompt:
        sys.exit("llama_peer: error: empty prompt")

    llama_cpp.llama_backend_init()
    system_info = llama_cpp.llama_print_system_info().decode().strip()
    log(f"system info: {system_info}")

    t0 = time.perf_counter()
    mparams = llama_cpp.llama_model_default_params()
    mparams.use_mmap = not args.no_mmap
    if args.no_repack:
        # llama.cpp's CPU_REPACK buffers copy the weights it repacks into
        # anonymous memory; without them it computes from the mapping.
        if not any(f[0] == "use_extra_bufts" for f in mparams._fields_):
            sys.exit("llama_peer: error: --no-repack: this llama-cpp-python "
                     "has no use_extra_bufts")
        mparams.use_extra_bufts = False
    model = llama_cpp.llama_model_load_from_file(args.model.encode(), mparams)
    if not model:
        sys.exit(f"llama_peer: error: llama.cpp could not load {args.model}")
    cparams = llama_cpp.llama_context_default_params()
    n_ctx = len(prompt) + args.decode + 16
    cparams.n_ctx = max(256, (n_ctx + 255) // 256 * 256)
    cparams.n_batch = max(len(prompt), 1)
    cparams.n_ubatch = max(len(prompt), 1)
    cparams.n_threads = args.threads
    cparams.n_threads_batch = args.threads
    ctx = llama_cpp.llama_init_from_model(model, cparams)
    if not ctx:
        sys.exit("llama_peer: error: llama.cpp could not create a context")
    load_s = time.perf_counter() - t0
    vocab = llama_cpp.llama_model_get_vocab(model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    if max(prompt) >= n_vocab:
        sys.exit(f"llama_peer: error: prompt id {max(prompt)} outside the "
                 f"vocabulary of {n_vocab}")
    log(f"loaded in {load_s:.1f} s (vocabulary {n_vocab}, n_ctx {cparams.n_ctx}, "
        f"{args.threads} threads, mmap {'off' if args.no_mmap else 'on'})")

    batch = llama_cpp.llama_batch_init(len(prompt), 0, 1)

    def decode(tokens, pos0):
        batch.n_tokens = len(tokens)
        for i, t in enumerate(tokens):
            batch.token[i] = t
            batch.pos[i] = pos0 + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = 1 if i == len(tokens) - 1 else 0
        rc = llama_cpp.llama_decode(ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")

    def argmax():
        ptr = llama_cpp.llama_get_logits_ith(ctx, -1)
        if not ptr:
            raise RuntimeError("llama_get_logits_ith returned NULL")
        return int(np.ctypeslib.as_array(ptr, shape=(n_vocab,)).argmax())

    def run(n_decode):
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        t0 = time.perf_counter()
        decode(prompt, 0)
        llama_cpp.llama_synchronize(ctx)
        t1 = time.perf_counter()
        generated = []
        pos = len(prompt)
        for _ in range(n_decode):
            tok = argmax()
            generated.append(tok)
            decode([tok], pos)
            pos += 1
        llama_cpp.llama_synchronize(ctx)
        t2 = time.perf_counter()
        generated.append(argmax())
        return t1 - t0, t2 - t1, generated

    log(f"warm-up: {len(prompt)}-token prefill + {args.warmup_decode} decode steps")
    run(args.warmup_decode)
    log(f"timed: {len(prompt)}-token prefill + {args.decode} decode steps")
    prefill_s, decode_s, generated = run(args.decode)
    log(f"prefill {len(prompt) / prefill_s:.2f} tokens/s, decode "
        f"{args.decode / decode_s:.2f} tokens/s")

    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)
    print(json.dumps({
        "llama_cpp_python": getattr(llama_cpp, "__version__", "?"),
        "system_info": system_info,
        "threads": args.threads,
        "mmap": not args.no_mmap,
        "load_s": load_s,
        "prompt_tokens": len(prompt),
        "prefill_s": prefill_s,
        "prefill_tokens_per_s": len(prompt) / prefill_s,
        "decode_steps": args.decode,
        "decode_s": decode_s,
        "decode_tokens_per_s": args.decode / decode_s,
        "generated": generated,
    }))


if __name__ == "__main__":
    main()
