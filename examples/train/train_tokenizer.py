#!/usr/bin/env python3
"""Train the example model's GPT-2 style byte-level BPE tokenizer (tokenizers==0.23.3).

Run: python examples/train/train_tokenizer.py --data /work/example-data --out /work/example-data/tokenizer.json

* pre-tokenizer: ByteLevel(add_prefix_space=False, use_regex=True), i.e. GPT-2's regex
  's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+
  followed by the byte-to-unicode mapping;
* model: BPE over the 256 byte symbols, vocabulary of at most 8000 entries;
* decoder: ByteLevel;
* one control token <|endoftext|> (id 0), used as BOS and EOS.
"""
import argparse
import os

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

VOCAB = 8000
EOT = "<|endoftext|>"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/example-data")
    ap.add_argument("--out", default="/work/example-data/tokenizer.json")
    args = ap.parse_args()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, min_frequency=2, special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train([os.path.join(args.data, "train.txt")], trainer)
    tok.save(args.out)
    print("vocab size", tok.get_vocab_size(), "eot id", tok.token_to_id(EOT))


if __name__ == "__main__":
    main()
