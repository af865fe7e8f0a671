#!/usr/bin/env python3
"""The same `moec synth` model (same family, sizes and seed) written as GGUF
and as a safetensors checkpoint must hold the same weights, which is checked
here with references independent of moec:

* the checkpoint is read with the `safetensors` package and its tensor
  names are mapped to GGUF names with the gguf package's own map
  (gguf.get_tensor_name_map, the one llama.cpp's converter uses), merging
  per-expert tensors as the converter does;
* Mixtral's Q and K are permuted as llama.cpp's converter permutes them for
  GGUF (LlamaModel.permute);
* the GGUF file is read with gguf.GGUFReader.
Every tensor must then be identical, element for element.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import gguf
from gguf import GGUFReader, MODEL_ARCH
from gguf.quants import dequantize
from safetensors.numpy import load_file

ARCHES = {"qwen3moe": MODEL_ARCH.QWEN3MOE, "qwen2moe": MODEL_ARCH.QWEN2MOE,
          "mixtral": MODEL_ARCH.LLAMA, "olmoe": MODEL_ARCH.OLMOE}


def permute(w, n_head, n_head_kv):
    # convert_hf_to_gguf.py, LlamaModel.permute
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def check(moec, family, shards, tmp):
    common = [f"--family={family}", "--seed=11", "--layers=2"]
    ggufPath = os.path.join(tmp, f"{family}.gguf")
    ckpt = os.path.join(tmp, f"{family}-ckpt")
    subprocess.run([moec, "synth", *common, "-o", ggufPath], check=True,
                   capture_output=True)
    subprocess.run([moec, "synth", *common, "--format=safetensors",
                    f"--shards={shards}", "-o", ckpt], check=True,
                   capture_output=True)
    hf = {}
    for name in sorted(os.listdir(ckpt)):
        if name.endswith(".safetensors"):
            hf.update(load_file(os.path.join(ckpt, name)))
    reader = GGUFReader(ggufPath)
    g = {t.name: dequantize(t.data, t.tensor_type).reshape(
            [int(d) for d in reversed(t.shape)]) for t in reader.tensors}
    heads = int(reader.fields[f"{gguf.MODEL_ARCH_NAMES[ARCHES[family]]}.attention.head_count"].contents())
    kv_heads = int(reader.fields[f"{gguf.MODEL_ARCH_NAMES[ARCHES[family]]}.attention.head_count_kv"].contents())

    # Merge per-expert tensors as the converter does.
    merged, experts = {}, {}
    for name, value in hf.items():
        m = re.match(r"(.*\.experts)\.(\d+)\.(\w+)\.weight$", name)
        if m:
            experts.setdefault(f"{m.group(1)}.{m.group(3)}.weight", {})[int(m.group(2))] = value
        else:
            merged[name] = value
    for name, parts in experts.items():
        merged[name] = np.stack([parts[i] for i in range(len(parts))])

    name_map = gguf.get_tensor_name_map(ARCHES[family], 2)
    problems = []
    seen = set()
    for name, value in merged.items():
        target = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
        if target is None:
            problems.append(f"gguf's map has no name for {name}")
            continue
        if family == "mixtral" and name.endswith("q_proj.weight"):
            value = permute(value, heads, heads)
        if family == "mixtral" and name.endswith("k_proj.weight"):
            value = permute(value, heads, kv_heads)
        if target not in g:
            problems.append(f"{name} -> {target}: not in the GGUF file")
            continue
        seen.add(target)
        ours = g[target].astype(np.float32)
        theirs = value.astype(np.float32).reshape(ours.shape)
        if not np.array_equal(ours, theirs):
            problems.append(f"{name} -> {target}: values differ")
    missing = set(g) - seen
    if missing:
        problems.append(f"GGUF tensors with no checkpoint tensor: {sorted(missing)[:3]}")
    print(("ok   " if not problems else "FAIL ") +
          f"{family:9s} {shards} shard(s): {len(merged)} tensors" +
          ("" if not problems else ": " + "; ".join(problems[:3])))
    return not problems


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--moec", required=True)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in ARCHES:
            for shards in (1, 2):
                work = os.path.join(tmp, str(shards))
                os.makedirs(work, exist_ok=True)
                results.append(check(args.moec, family, shards, work))
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
