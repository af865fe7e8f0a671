#!/usr/bin/env python3
"""Export the trained example model (a transformers Qwen3MoeForCausalLM directory) to GGUF F16.

Run: python examples/train/export_gguf.py --model /work/example-export \
         --out examples/model/moe-example-f16.gguf

Layout follows llama.cpp's convert_hf_to_gguf.py for qwen3moe with --outtype f16:
* tensor names from gguf.get_tensor_name_map(MODEL_ARCH.QWEN3MOE, n_layers);
* experts stacked into blk.N.ffn_{gate,up,down}_exps ([n_expert, n_ff, n_embd] and
  [n_expert, n_embd, n_ff] as numpy shapes), transformers' fused gate_up_proj split in halves
  (gate first);
* 2-D weights F16; 1-D norms and the router (ffn_gate_inp) F32;
* no q/k permutation (Qwen3 uses NeoX-style RoPE); tied embeddings, so no output.weight;
* tokenizer: tokenizer.ggml.model "gpt2", pre "gpt-2", tokens, token_type, merges ("a b", by rank),
  <|endoftext|> as BOS and EOS, add_bos_token true.
"""
import argparse
import json
import os

import gguf
import numpy as np
import torch
from transformers import Qwen3MoeForCausalLM

ARCH = "qwen3moe"


def tensors(model):
    cfg = model.config
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN3MOE, cfg.num_hidden_layers)
    sd = {k: v.detach().to(torch.float32).numpy() for k, v in model.state_dict().items()}
    out = []
    I = cfg.moe_intermediate_size

    def emit(hf_name, arr):
        name = tmap.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        assert name is not None, hf_name
        keep_f32 = arr.ndim == 1 or name.endswith("ffn_gate_inp.weight")
        out.append((name, np.ascontiguousarray(arr, dtype=np.float32 if keep_f32 else np.float16)))

    for k in sorted(sd):
        if k == "lm_head.weight":
            assert cfg.tie_word_embeddings
            continue
        arr = sd[k]
        if k.endswith("mlp.experts.gate_up_proj"):
            assert arr.shape == (cfg.num_experts, 2 * I, cfg.hidden_size), arr.shape
            base = k[: -len("gate_up_proj")]
            emit(base + "gate_proj.weight", arr[:, :I, :])
            emit(base + "up_proj.weight", arr[:, I:, :])
        elif k.endswith("mlp.experts.down_proj"):
            emit(k + ".weight", arr)
        else:
            emit(k, arr)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="/work/example-export")
    ap.add_argument("--out", default="examples/model/moe-example-f16.gguf")
    args = ap.parse_args()
    model = Qwen3MoeForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    cfg = model.config
    tj = json.load(open(os.path.join(args.model, "tokenizer.json"), encoding="utf-8"))
    vocab = tj["model"]["vocab"]
    for a in tj["added_tokens"]:
        vocab[a["content"]] = a["id"]
    n_vocab = cfg.vocab_size
    assert sorted(vocab.values()) == list(range(n_vocab))
    tokens = [None] * n_vocab
    for t, i in vocab.items():
        tokens[i] = t
    special = {a["id"] for a in tj["added_tokens"] if a["special"]}
    types = [gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(n_vocab)]
    merges = [" ".join(m) if isinstance(m, list) else m for m in tj["model"]["merges"]]
    eot = vocab["<|endoftext|>"]
    rope_theta = cfg.rope_parameters["rope_theta"]

    w = gguf.GGUFWriter(args.out, ARCH)
    w.add_name("moec-example-moe")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_expert_feed_forward_length(cfg.moe_intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_key_length(cfg.head_dim)
    w.add_value_length(cfg.head_dim)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(rope_theta)
    w.add_expert_count(cfg.num_experts)
    w.add_expert_used_count(cfg.num_experts_per_tok)
    w.add_expert_weights_norm(bool(cfg.norm_topk_prob))
    w.add_vocab_size(n_vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(eot)
    w.add_eos_token_id(eot)
    w.add_add_bos_token(True)
    for name, arr in tensors(model):
        w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
