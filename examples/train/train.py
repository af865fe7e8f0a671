#!/usr/bin/env python3
"""Train moec's small example Mixture-of-Experts language model (Qwen3-MoE layout) on CPU.

Pinned environment (the venv used): python 3.11, torch==2.15.0 (CPU), transformers==5.24.0,
tokenizers==0.23.3, safetensors, numpy==2.2.6.  Seed 0; torch.set_num_threads(2).

Steps (from the repository root):
  apt-get install -y python3.11-doc
  python examples/train/prepare_corpus.py   --out /work/example-data
  python examples/train/train_tokenizer.py  --data /work/example-data --out /work/example-data/tokenizer.json
  python examples/train/train.py            --data /work/example-data --out /work/example-export
  python examples/train/evaluate.py         --model /work/example-export --data /work/example-data
  python examples/train/export_gguf.py      --model /work/example-export --out examples/model/moe-example-f16.gguf

Training: random 256-token windows of the tokenized training split whose first token is replaced
by BOS (<|endoftext|>), exactly like llama.cpp's perplexity windows; each position predicts the next
token (255 targets per window), AdamW (betas 0.9/0.95, weight decay 0.1), linear warm-up then cosine decay to 10%,
gradient clipping 1.0, Qwen3-MoE's load-balancing auxiliary loss (coefficient 0.001).  The LM loss
(cross entropy, nats/token) is logged to examples/train/loss.csv every --log-every steps.  A
wall-clock budget (--time-budget seconds) stops training early if --steps are not done by then.
"""
import argparse
import csv
import math
import os
import time

import numpy as np
import torch
from tokenizers import Tokenizer
from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
CTX = 256


def model_config(vocab_size, eot_id):
    return Qwen3MoeConfig(
        vocab_size=vocab_size, hidden_size=256, intermediate_size=256,
        num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
        hidden_act="silu", max_position_embeddings=512, rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        attention_bias=False, decoder_sparse_step=1, mlp_only_layers=[],
        moe_intermediate_size=256, num_experts=16, num_experts_per_tok=4, norm_topk_prob=True,
        output_router_logits=True, router_aux_loss_coef=0.001,
        bos_token_id=eot_id, eos_token_id=eot_id, pad_token_id=None,
    )


def load_ids(data, tok):
    cache = os.path.join(data, "train_ids.npy")
    if os.path.exists(cache):
        return np.load(cache)
    with open(os.path.join(data, "train.txt"), encoding="utf-8") as f:
        text = f.read()
    ids = np.array(tok.encode(text).ids, dtype=np.uint16)
    np.save(cache, ids)
    return ids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/example-data")
    ap.add_argument("--out", default="/work/example-export")
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=60)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--time-budget", type=float, default=27 * 60)
    ap.add_argument("--loss-csv", default=os.path.join(HERE, "loss.csv"))
    args = ap.parse_args()

    torch.manual_seed(0)
    np.random.seed(0)
    torch.set_num_threads(2)
    tok = Tokenizer.from_file(os.path.join(args.data, "tokenizer.json"))
    eot = tok.token_to_id("<|endoftext|>")
    ids = torch.from_numpy(load_ids(args.data, tok).astype(np.int64))
    print(f"train tokens: {len(ids)}", flush=True)

    cfg = model_config(tok.get_vocab_size(), eot)
    model = Qwen3MoeForCausalLM(cfg)
    nparams = sum(p.numel() for p in model.parameters())
    print(f"parameters: {nparams}", flush=True)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        t = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))

    gen = torch.Generator().manual_seed(0)
    model.train()
    t0 = time.time()
    with open(args.loss_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "tokens", "elapsed_s", "lr", "train_loss"])
        acc, nacc = 0.0, 0
        step = 0
        for step in range(args.steps):
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            starts = torch.randint(0, len(ids) - CTX, (args.batch,), generator=gen)
            batch = torch.stack([ids[s:s + CTX] for s in starts.tolist()])
            batch[:, 0] = eot  # BOS first, as llama.cpp's perplexity does
            out = model(input_ids=batch, labels=batch.clone(), use_cache=False)
            # HF shifts labels internally: logits[:, i] predicts input_ids[:, i+1].
            loss = out.loss
            lm_loss = (loss - cfg.router_aux_loss_coef * out.aux_loss).item()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            acc += lm_loss
            nacc += 1
            if (step + 1) % args.log_every == 0:
                el = time.time() - t0
                w.writerow([step + 1, (step + 1) * args.batch * CTX, f"{el:.1f}", f"{lr_at(step):.6g}",
                            f"{acc / nacc:.4f}"])
                f.flush()
                print(f"step {step + 1} loss {acc / nacc:.4f} lr {lr_at(step):.2e} {el:.0f}s", flush=True)
                acc, nacc = 0.0, 0
            if (step + 1) % 200 == 0:
                model.save_pretrained(args.out)
            if time.time() - t0 > args.time_budget:
                print(f"time budget reached at step {step + 1}", flush=True)
                break
    el = time.time() - t0
    print(f"trained {step + 1} steps in {el:.0f}s", flush=True)
    model.config.output_router_logits = False
    model.save_pretrained(args.out)
    tok.save(os.path.join(args.out, "tokenizer.json"))


if __name__ == "__main__":
    main()
