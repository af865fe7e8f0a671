#!/usr/bin/env python3
"""Tokenizes every test text of every vocabulary in shared/testdata/tokenizers
with `moec tokenize --model VOCAB.gguf` and requires exactly the reference
ids (llama.cpp's, recorded in VOCAB.gguf.out).

usage: check_tokenizer_references.py --moec PATH --testdata DIR
"""
import argparse
import glob
import os
import subprocess
import sys

SEPARATOR = "\n__ggml_vocab_test__\n"


def check(moec, vocab):
    with open(vocab + ".inp", encoding="utf-8", newline="") as f:
        texts = f.read().split(SEPARATOR)
    if texts and texts[-1] == "":
        texts.pop()
    with open(vocab + ".out", encoding="utf-8") as f:
        expected = f.read().split("\n")
    failures = 0
    for i, text in enumerate(texts):
        want = expected[i].strip()
        run = subprocess.run([moec, "tokenize", "--model", vocab],
                             input=text.encode("utf-8"), capture_output=True)
        got = run.stdout.decode().strip()
        if run.returncode != 0 or got != want:
            failures += 1
            if failures <= 5:
                print(f"FAIL {os.path.basename(vocab)} text {i} {text!r}:\n"
                      f"  expected {want}\n  got      {got} {run.stderr.decode().strip()}")
    print(f"{'ok  ' if not failures else 'FAIL'} {os.path.basename(vocab)}: "
          f"{len(texts) - failures} of {len(texts)} texts tokenize to the "
          f"reference ids")
    return len(texts) - failures, failures


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--moec", required=True)
    parser.add_argument("--testdata", required=True)
    args = parser.parse_args()
    vocabs = sorted(glob.glob(os.path.join(args.testdata, "*.gguf")))
    if not vocabs:
        print(f"no vocabularies in {args.testdata}")
        return 1
    passed = failed = 0
    for vocab in vocabs:
        p, f = check(args.moec, vocab)
        passed += p
        failed += f
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
