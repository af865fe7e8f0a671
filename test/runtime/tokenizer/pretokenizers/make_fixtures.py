#!/usr/bin/env python3
"""Checks moec's pre-tokenizers against llama.cpp's own, and writes the small
fixtures that ctest checks (check_pretokenizers.py). Run by hand, not in CI:
it needs llama-cpp-python (which builds llama.cpp) and tokenizers from PyPI.

    python3 -m venv /var/tmp/tok-venv
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_CURL=OFF" \\
      /var/tmp/tok-venv/bin/pip install llama-cpp-python tokenizers gguf numpy
    /var/tmp/tok-venv/bin/python test/runtime/tokenizer/pretokenizers/make_fixtures.py \\
      --moec build/bin/moec [--texts 3000] [--write]

1. Trains a byte-level BPE vocabulary (PyPI tokenizers, 2000 entries) on
   English (/usr/share/common-licenses), code (Python's standard library and
   this repository's C++), multilingual text (the day and month names and
   other strings of glibc's locale sources, /usr/share/i18n/locales) and
   emoji, with one control token and one user-defined token.
2. For every pre-tokenizer name that both moec and llama.cpp know, writes the
   vocabulary as a vocabulary-only GGUF with tokenizer.ggml.pre = NAME and
   tokenizes --texts random texts (mixtures of all of the above, unusual
   whitespace, numbers, contractions, marks, random code points) with
   llama.cpp's llama_tokenize (no BOS, parse_special false) and with
   `moec tokenize --pre-tokenizer NAME`; prints, per name, how many agree.
3. With --write, keeps the first 300 texts as the committed fixture
   (texts.txt), the vocabulary (vocab.gguf, pre = gpt-2) and llama.cpp's ids
   once per group of names that give identical ids (NAME.ids, whose first
   line lists the group).
"""
import argparse
import glob
import os
import random
import re
import subprocess
import sys
import tempfile

import gguf
import llama_cpp
from tokenizers import Tokenizer, models, pre_tokenizers, trainers, decoders

HERE = os.path.dirname(os.path.abspath(__file__))
SEPARATOR = "\n__moec_text__\n"
FIXTURE_TEXTS = 300


def english():
    out = []
    for path in sorted(glob.glob("/usr/share/common-licenses/*")):
        if os.path.isfile(path):
            out.append(open(path, encoding="utf-8", errors="replace").read())
    return "\n".join(out)


def code():
    out = []
    for path in sorted(glob.glob("/usr/lib/python3.11/*.py"))[:60]:
        out.append(open(path, encoding="utf-8", errors="replace").read())
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(HERE))))
    for path in sorted(glob.glob(os.path.join(root, "runtime", "*", "*.cpp"))):
        out.append(open(path, encoding="utf-8").read())
    return "\n".join(out)


def multilingual():
    """The strings of glibc's locale sources, <Uxxxx> decoded."""
    out = []
    for path in sorted(glob.glob("/usr/share/i18n/locales/*")):
        try:
            text = open(path, encoding="utf-8", errors="replace").read()
        except (IsADirectoryError, PermissionError):
            continue
        for s in re.findall(r'"((?:<U[0-9A-Fa-f]{4,8}>)+)"', text):
            out.append("".join(chr(int(h, 16)) for h in
                               re.findall(r"<U([0-9A-Fa-f]{4,8})>", s)))
    return out


EMOJI = ["😀", "😂", "🥲", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "🦙", "🚀", "✨", "🇩🇪",
         "🤖", "🙏🏿", "☕", "🧑‍💻"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\u00a0", "\u3000",
          "\u2009", "\u200b", "\u0085", " \t ", "\u2028", "\x0b", "\x0c"]
ODD = ["'s", "'S", "'ll", "'LL", "'re", "'ve", "'d", "'m", "'t", "n't", "...",
       "!!", "?!", "$", "+", "<=>", "^", "~", "|", "`", "½", "²", "٣", "१२३",
       "e\u0301", "a\u0308\u0304", "ﬁ", "Ⅻ", "ＡＢＣ", "１２３", "。", "，", "、",
       "«»", "„“", "—", "…", "\U0001d400", "\U00010400", "ǅ", "ᾈ", "ß", "İ",
       "<|endoftext|>", "<tool>", "\ufffd", "\x00", "\x7f", "\u00ad", "\U000e0041"]


def random_codepoint(rng):
    while True:
        cp = rng.choice([rng.randrange(0x20, 0x250), rng.randrange(0x370, 0x2000),
                         rng.randrange(0x2000, 0x3000), rng.randrange(0x3000, 0xA000),
                         rng.randrange(0xAC00, 0xD7A4), rng.randrange(0x1F300, 0x1FAFF),
                         rng.randrange(0x10000, 0x30000)])
        if not 0xD800 <= cp <= 0xDFFF:
            return chr(cp)


def make_text(rng, sources):
    eng, src, words = sources
    parts = []
    for _ in range(rng.randint(1, 12)):
        kind = rng.random()
        if kind < 0.25:
            i = rng.randrange(len(eng) - 200)
            parts.append(eng[i:i + rng.randint(5, 80)])
        elif kind < 0.40:
            i = rng.randrange(len(src) - 200)
            parts.append(src[i:i + rng.randint(5, 80)])
        elif kind < 0.55:
            parts.append(rng.choice(words))
        elif kind < 0.62:
            parts.append(rng.choice(EMOJI))
        elif kind < 0.72:
            parts.append(rng.choice(SPACES))
        elif kind < 0.80:
            parts.append(str(rng.randrange(10 ** rng.randint(1, 12))))
        elif kind < 0.90:
            parts.append(rng.choice(ODD))
        else:
            parts.append("".join(random_codepoint(rng)
                                 for _ in range(rng.randint(1, 6))))
        if rng.random() < 0.5:
            parts.append(" ")
    return "".join(parts)


def train(corpus):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2000, min_frequency=2, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer=trainer)
    return tok


def write_gguf(tok, path, pre):
    vocab = tok.get_vocab()
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    tokens.append("<tool>")
    types = [gguf.TokenType.NORMAL] * len(tokens)
    types[vocab["<|endoftext|>"]] = gguf.TokenType.CONTROL
    types[-1] = gguf.TokenType.USER_DEFINED
    import json
    merges = [" ".join(m) if isinstance(m, (list, tuple)) else m
              for m in json.loads(tok.to_str())["model"]["merges"]]
    w = gguf.GGUFWriter(path, "gpt2")
    w.add_name("moec-pretokenizer-fixture")
    w.add_block_count(1)
    w.add_context_length(1024)
    w.add_embedding_length(64)
    w.add_feed_forward_length(128)
    w.add_head_count(1)
    w.add_layer_norm_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(vocab["<|endoftext|>"])
    w.add_eos_token_id(vocab["<|endoftext|>"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def llama_ids(path, texts):
    model = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    return [model.tokenize(t.encode("utf-8"), add_bos=False, special=False)
            for t in texts]


def moec_ids(moec, path, pre, texts):
    run = subprocess.run([moec, "tokenize", "--model", path, "--pre-tokenizer",
                          pre, "--separator", SEPARATOR],
                         input=SEPARATOR.join(texts).encode("utf-8"),
                         capture_output=True)
    if run.returncode != 0:
        return None, run.stderr.decode().strip()
    lines = run.stdout.decode().split("\n")[:len(texts)]
    return [[int(x) for x in l.split()] for l in lines], ""


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--moec", required=True)
    p.add_argument("--texts", type=int, default=3000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--write", action="store_true")
    p.add_argument("--only", help="check only this name")
    args = p.parse_args()

    eng, src, words = english(), code(), multilingual()
    rng = random.Random(args.seed)
    corpus = [eng, src] + words + EMOJI * 20
    tok = train(corpus)
    texts = [make_text(rng, (eng, src, words)) for _ in range(args.texts)]
    # The separator never occurs in a text.
    assert not any("__moec_text__" in t for t in texts)

    names = subprocess.run([args.moec, "tokenize", "--list-pre-tokenizers"],
                           capture_output=True, text=True,
                           check=True).stdout.split()
    if args.only:
        names = [args.only]
    groups = {}  # ids (as a tuple of tuples) -> names
    total_bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            path = os.path.join(tmp, f"{name}.gguf")
            write_gguf(tok, path, name)
            try:
                theirs = llama_ids(path, texts)
            except Exception as e:  # llama.cpp does not know the name
                print(f"skip {name}: llama.cpp cannot load it ({e})")
                continue
            ours, err = moec_ids(args.moec, path, name, texts)
            if ours is None:
                print(f"FAIL {name}: moec: {err}")
                total_bad += len(texts)
                continue
            bad = [i for i in range(len(texts)) if ours[i] != theirs[i]]
            total_bad += len(bad)
            print(f"{'ok  ' if not bad else 'FAIL'} {name}: {len(texts) - len(bad)}"
                  f" of {len(texts)} texts give llama.cpp's ids")
            for i in bad[:3]:
                print(f"    text {i}: {texts[i]!r}\n      llama.cpp {theirs[i]}\n"
                      f"      moec      {ours[i]}")
            key = tuple(tuple(x) for x in theirs[:FIXTURE_TEXTS])
            groups.setdefault(key, []).append(name)
        if args.write:
            for old in glob.glob(os.path.join(HERE, "*.ids")):
                os.remove(old)
            write_gguf(tok, os.path.join(HERE, "vocab.gguf"), "gpt-2")
            with open(os.path.join(HERE, "texts.txt"), "w", encoding="utf-8",
                      newline="") as f:
                f.write(SEPARATOR.join(texts[:FIXTURE_TEXTS]))
            for ids, group in groups.items():
                with open(os.path.join(HERE, f"{group[0]}.ids"), "w") as f:
                    f.write("# " + " ".join(group) + "\n")
                    for row in ids:
                        f.write(" ".join(map(str, row)) + "\n")
            print(f"wrote {len(groups)} groups of names to {HERE}")
    print(f"{total_bad} texts differ in all")
    return 1 if total_bad else 0


if __name__ == "__main__":
    sys.exit(main())
