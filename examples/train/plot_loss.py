#!/usr/bin/env python3
"""Plot examples/train/loss.csv to examples/model/loss.png (matplotlib==3.10.0, Agg backend).

Run: python examples/train/plot_loss.py
"""
import csv
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    rows = list(csv.DictReader(open(os.path.join(HERE, "loss.csv"))))
    steps = [int(r["step"]) for r in rows]
    loss = [float(r["train_loss"]) for r in rows]
    tokens = [int(r["tokens"]) / 1e6 for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(steps, loss, lw=1.5)
    ax.set_xlabel("step (16 x 256 tokens)")
    ax.set_ylabel("training loss (nats/token)")
    ax.set_title("moec example MoE (Qwen3-MoE layout, 22.1M params): training loss")
    ax.grid(alpha=0.3)
    top = ax.secondary_xaxis("top", functions=(lambda s: s * 4096 / 1e6, lambda t: t * 1e6 / 4096))
    top.set_xlabel("tokens seen (millions)")
    fig.tight_layout()
    out = os.path.join(HERE, "..", "model", "loss.png")
    fig.savefig(out)
    print("wrote", os.path.normpath(out), "last", steps[-1], loss[-1], tokens[-1])


if __name__ == "__main__":
    main()
