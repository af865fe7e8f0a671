#!/usr/bin/env python3
"""Tokenizes the committed fixture texts with `moec tokenize --pre-tokenizer
NAME` for every pre-tokenizer name of every NAME.ids file and requires
exactly llama.cpp's ids, recorded there by make_fixtures.py.

usage: check_pretokenizers.py --moec PATH
"""
import argparse
import glob
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SEPARATOR = "\n__moec_text__\n"


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--moec", required=True)
    args = p.parse_args()
    vocab = os.path.join(HERE, "vocab.gguf")
    with open(os.path.join(HERE, "texts.txt"), encoding="utf-8", newline="") as f:
        texts = f.read().split(SEPARATOR)
    failed = checked = 0
    files = sorted(glob.glob(os.path.join(HERE, "*.ids")))
    if not files:
        print("no fixtures")
        return 1
    for path in files:
        with open(path) as f:
            names = f.readline()[1:].split()
            want = [line.rstrip("\n") for line in f]
        if len(want) != len(texts):
            print(f"FAIL {path}: {len(want)} rows for {len(texts)} texts")
            return 1
        for name in names:
            run = subprocess.run(
                [args.moec, "tokenize", "--model", vocab, "--pre-tokenizer",
                 name, "--separator", SEPARATOR],
                input=SEPARATOR.join(texts).encode("utf-8"), capture_output=True)
            got = run.stdout.decode().split("\n")[:len(texts)]
            bad = [i for i in range(len(texts))
                   if run.returncode != 0 or i >= len(got) or got[i] != want[i]]
            checked += len(texts)
            failed += len(bad)
            print(f"{'ok  ' if not bad else 'FAIL'} {name}: "
                  f"{len(texts) - len(bad)} of {len(texts)} texts give "
                  f"llama.cpp's ids {run.stderr.decode().strip()}")
            for i in bad[:2]:
                print(f"    text {i} {texts[i]!r}\n      want {want[i]}\n"
                      f"      got  {got[i] if i < len(got) else None}")
    print(f"{checked - failed} of {checked} tokenizations agree")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
