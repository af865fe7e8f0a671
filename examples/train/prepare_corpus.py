#!/usr/bin/env python3
"""Build the training corpus for the example MoE model from Python's documentation.

Source: Debian package python3.11-doc (version 3.11.2-6+deb12u9), HTML under
/usr/share/doc/python3.11/html, licensed under the PSF License Version 2
(see /usr/share/doc/python3.11-doc/copyright).

Install:  apt-get install -y python3.11-doc
Run:      python examples/train/prepare_corpus.py --out /work/example-data

Only the main content (<div role="main">) of each page is kept; HTML is turned
into plain text with Python's html.parser.  Pages are visited in sorted order,
so the output is deterministic.  The last ~5% of characters (cut at a document
boundary) is the held-out evaluation split.
"""
import argparse
import os
import re
from html.parser import HTMLParser

ROOT = "/usr/share/doc/python3.11/html"
SECTIONS = ["tutorial", "reference", "howto", "faq", "using", "extending", "library"]
BLOCK = {"p", "div", "section", "h1", "h2", "h3", "h4", "h5", "h6", "li", "dt", "dd",
         "pre", "table", "tr", "blockquote", "br", "ul", "ol", "dl"}
SKIP = {"script", "style"}


class MainText(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.depth = 0          # nesting depth inside <div role="main">, 0 = outside
        self.skip = 0           # inside script/style/headerlink
        self.pre = 0
        self.out = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if self.depth == 0:
            if tag == "div" and a.get("role") == "main":
                self.depth = 1
            return
        if tag == "div":
            self.depth += 1
        if tag in SKIP or (tag == "a" and "headerlink" in (a.get("class") or "")):
            self.skip += 1
        if tag == "pre":
            self.pre += 1
        if tag in BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag):
        if self.depth == 0:
            return
        if tag in SKIP or (tag == "a" and self.skip):
            self.skip = max(0, self.skip - 1)
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        if tag in BLOCK:
            self.out.append("\n")
        if tag == "div":
            self.depth -= 1

    def handle_data(self, data):
        if self.depth == 0 or self.skip:
            return
        if self.pre:
            self.out.append(data)
        else:
            self.out.append(re.sub(r"\s+", " ", data))


def page_text(path):
    p = MainText()
    with open(path, encoding="utf-8") as f:
        p.feed(f.read())
    text = "".join(p.out)
    lines = [ln.rstrip() for ln in text.split("\n")]
    lines = [ln.lstrip() if not ln.startswith("    ") else ln for ln in lines]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/work/example-data")
    ap.add_argument("--heldout-fraction", type=float, default=0.05)
    args = ap.parse_args()
    docs = []
    for sec in SECTIONS:
        for dirpath, _, files in sorted(os.walk(os.path.join(ROOT, sec))):
            for fn in sorted(files):
                if fn.endswith(".html"):
                    t = page_text(os.path.join(dirpath, fn))
                    if t:
                        docs.append(t)
    total = sum(len(d) + 2 for d in docs)
    target = total * (1 - args.heldout_fraction)
    train, held, n = [], [], 0
    for d in docs:
        (train if n < target else held).append(d)
        n += len(d) + 2
    os.makedirs(args.out, exist_ok=True)
    for name, part in (("train.txt", train), ("heldout.txt", held)):
        with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
            f.write("\n\n".join(part) + "\n")
    print(f"docs={len(docs)} train_docs={len(train)} heldout_docs={len(held)} "
          f"train_chars={sum(map(len, train))} heldout_chars={sum(map(len, held))}")


if __name__ == "__main__":
    main()
