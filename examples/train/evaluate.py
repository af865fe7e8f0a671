#!/usr/bin/env python3
"""Held-out perplexity of the example model, computed exactly as llama.cpp's `llama-perplexity`
(tools/perplexity/perplexity.cpp, function perplexity()) does with -c 256:

1. tokens = tokenize(held-out text, add_special=True): the text is tokenized as ONE string (no
   special-token parsing) and, because the GGUF says tokenizer.ggml.add_bos_token = true, a single
   BOS (<|endoftext|>) is prepended.  No other BOS/EOS is inserted.
2. n_ctx = 256; n_chunk = len(tokens) // n_ctx; chunk i is tokens[i*n_ctx : (i+1)*n_ctx]
   (non-overlapping; the leftover tail is dropped).
3. The first token of every chunk is replaced by BOS before evaluation (for chunk 0 it already is).
4. Each chunk is evaluated from scratch (empty KV cache).  Only the second half is scored: with
   first = n_ctx/2, the logits at positions first .. n_ctx-2 predict tokens first+1 .. n_ctx-1 of
   the chunk (the original tokens), i.e. n_ctx-1-first = 127 predictions per chunk.
5. PPL = exp(sum of -log softmax(logits)[target] / number of predictions), in float64.

Run: python examples/train/evaluate.py --model /work/example-export --data /work/example-data
"""
import argparse
import math
import os

import torch
from tokenizers import Tokenizer
from transformers import Qwen3MoeForCausalLM


def heldout_tokens(model_dir, data):
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    with open(os.path.join(data, "heldout.txt"), encoding="utf-8") as f:
        text = f.read()
    bos = tok.token_to_id("<|endoftext|>")
    return [bos] + tok.encode(text).ids, bos


@torch.no_grad()
def perplexity(model, tokens, bos, n_ctx=256, batch=8):
    first = n_ctx // 2
    n_chunk = len(tokens) // n_ctx
    nll, count = 0.0, 0
    for c0 in range(0, n_chunk, batch):
        chunks = []
        for i in range(c0, min(n_chunk, c0 + batch)):
            ch = list(tokens[i * n_ctx:(i + 1) * n_ctx])
            ch[0] = bos
            chunks.append(ch)
        x = torch.tensor(chunks)
        logits = model(input_ids=x, use_cache=False).logits.double()
        logp = torch.log_softmax(logits[:, first:n_ctx - 1], dim=-1)
        tgt = torch.tensor([[tokens[i * n_ctx + j] for j in range(first + 1, n_ctx)]
                            for i in range(c0, c0 + len(chunks))])
        nll -= logp.gather(-1, tgt.unsqueeze(-1)).sum().item()
        count += tgt.numel()
    return math.exp(nll / count), n_chunk, count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="/work/example-export")
    ap.add_argument("--data", default="/work/example-data")
    ap.add_argument("--ctx", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = Qwen3MoeForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    tokens, bos = heldout_tokens(args.model, args.data)
    ppl, n_chunk, count = perplexity(model, tokens, bos, args.ctx)
    print(f"held-out tokens (with BOS): {len(tokens)}  chunks: {n_chunk}  scored: {count}")
    print(f"held-out PPL (llama.cpp protocol, n_ctx={args.ctx}): {ppl:.4f}")


if __name__ == "__main__":
    main()
