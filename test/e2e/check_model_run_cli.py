#!/usr/bin/env python3
"""out/model-run as a user meets it, on the example model (examples/model).

    check_model_run_cli.py --setup --workdir DIR --moec MOEC
        compiles the example model into DIR/plain, and a copy carrying a
        ChatML chat template into DIR/chat (the ctest fixture);
    check_model_run_cli.py --case NAME --workdir DIR --moec MOEC
                           [--reference REF]
        runs one case (--list prints them).

Text is checked against token ids: the example GGUF's own vocabulary (read
with the gguf package) decodes the ids that `--prompt-ids` generates, so
`-p` must print exactly the prompt and those pieces.
"""
import argparse
import math
import os
import re
import shutil
import subprocess
import sys

import gguf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "examples", "model", "moe-example-f16.gguf")
EXCERPT = os.path.join(ROOT, "test", "e2e", "data",
                       "python-docs-heldout-excerpt.txt")
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + "
          "'\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
          "{% endif %}")


class Failure(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise Failure(what)


def run(args, stdin=None):
    return subprocess.run(args, input=stdin, capture_output=True)


# ---------------------------------------------------------------- vocabulary

def byte_decoder():
    printable = (list(range(ord("!"), ord("~") + 1)) +
                 list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100)))
    table, n = {}, 0
    for b in range(256):
        if b in printable:
            table[chr(b)] = b
        else:
            table[chr(256 + n)] = b
            n += 1
    return table


class Vocab:
    def __init__(self, path):
        r = gguf.GGUFReader(path)
        f = r.fields["tokenizer.ggml.tokens"]
        self.tokens = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        t = r.fields["tokenizer.ggml.token_type"]
        self.types = [int(t.parts[i][0]) for i in t.data]
        self.decoder = byte_decoder()

    def piece(self, token):
        if self.types[token] == 3:  # control: nothing
            return b""
        return bytes(self.decoder[c] for c in self.tokens[token])

    def text(self, ids):
        return b"".join(self.piece(t) for t in ids)


def tokenize(args, text, bos=True, parse_special=False):
    cmd = [args.moec, "tokenize", "--model", MODEL]
    cmd += ["--bos"] if bos else []
    cmd += ["--parse-special"] if parse_special else []
    out = run(cmd, text.encode())
    expect(out.returncode == 0, out.stderr.decode())
    return [int(x) for x in out.stdout.split()]


def model_run(args, which="plain"):
    return os.path.join(args.workdir, which, "model-run")


def greedy_ids(args, prompt_ids, n, which="plain"):
    out = run([model_run(args, which), "--prompt-ids",
               ",".join(map(str, prompt_ids)), "-n", str(n), "-t", "2"])
    expect(out.returncode == 0, out.stderr.decode())
    return [int(x) for x in out.stdout.split()]


# --------------------------------------------------------------------- cases

def case_text_prints_n_tokens_and_speed(args):
    out = run([model_run(args), "-p", "Hello", "-n", "16", "--seed", "3",
               "--ignore-eos", "-t", "2"])
    expect(out.returncode == 0, out.stderr.decode())
    expect(out.stdout.startswith(b"Hello"), f"stdout {out.stdout!r}")
    err = out.stderr.decode()
    # 16 tokens generated: 15 of them evaluated (the last one never is).
    expect(re.search(r"eval time = +[0-9.]+ ms / +15 runs .* tokens per second",
                     err), err)
    expect(re.search(r"prompt eval time = +[0-9.]+ ms / +2 tokens .* tokens per"
                     r" second", err), err)
    print(out.stdout.decode(errors="replace"))


def case_text_is_the_decoded_greedy_ids(args):
    vocab = Vocab(MODEL)
    prompt = "The module provides functions for"
    ids = greedy_ids(args, tokenize(args, prompt), 40)
    out = run([model_run(args), "-p", prompt, "-n", "40", "--temp", "0",
               "--ignore-eos", "-t", "2"])
    expect(out.returncode == 0, out.stderr.decode())
    want = prompt.encode() + vocab.text(ids) + b"\n"
    expect(out.stdout == want, f"\n got  {out.stdout!r}\n want {want!r}")


def case_warmup_leaves_the_same_tokens_and_logits(args):
    # --warmup runs the prompt and 4 decode steps untimed, then resets the
    # model: the timed run must be the cold run, token for token and bit
    # for bit, and say how long the warm-up took.
    prompt = ",".join(str(i) for i in range(3, 40))
    got = {}
    for name, extra in (("cold", []), ("warm", ["--warmup"])):
        path = os.path.join(args.workdir, f"warmup-{name}.f32")
        out = run([model_run(args), "--prompt-ids", prompt, "-n", "12", "-t",
                   "2", "--logits-out", path] + extra)
        expect(out.returncode == 0, out.stderr.decode())
        got[name] = (out.stdout, open(path, "rb").read(), out.stderr.decode())
    expect(got["warm"][0] == got["cold"][0],
           f"tokens: {got['warm'][0]!r} vs {got['cold'][0]!r}")
    expect(got["warm"][1] == got["cold"][1], "logits differ after --warmup")
    expect(re.search(r"warm-up time = +[0-9.]+ ms \(untimed: the prompt and 4 "
                     r"decode steps, then a reset\)", got["warm"][2]),
           got["warm"][2])
    expect("warm-up" not in got["cold"][2], got["cold"][2])


def case_generated_logits_are_those_the_ids_come_from(args):
    # --generated-logits-out: one row per generated id, the prompt run as a
    # plain prefill (its last layer computes the last token alone). The
    # rows are --logits-out's rows of the same positions: the prompt's last
    # within rounding (other rows in a batch change a kernel's blocking),
    # the decode steps bit for bit (the same keys and values were stored);
    # and each id is its row's argmax.
    import numpy as np
    prompt = [(7 * i + 3) % 200 for i in range(45)]
    ids = ",".join(map(str, prompt))
    every = os.path.join(args.workdir, "generated-every.f32")
    generated = os.path.join(args.workdir, "generated-only.f32")
    a = run([model_run(args), "--prompt-ids", ids, "-n", "6", "-t", "2",
             "--logits-out", every])
    b = run([model_run(args), "--prompt-ids", ids, "-n", "6", "-t", "2",
             "--generated-logits-out", generated])
    expect(a.returncode == 0 and b.returncode == 0,
           a.stderr.decode() + b.stderr.decode())
    tokens = [int(t) for t in b.stdout.split()]
    rows = np.fromfile(generated, dtype=np.float32)
    expect(rows.size % 6 == 0, f"{rows.size} floats for 6 rows")
    rows = rows.reshape(6, -1)
    all_rows = np.fromfile(every, dtype=np.float32).reshape(-1, rows.shape[1])
    expect(all_rows.shape[0] == len(prompt) + 5, f"{all_rows.shape}")
    first = all_rows[len(prompt) - 1].astype(np.float64)
    error = float(np.abs(rows[0] - first).max() / np.abs(first).max())
    expect(error < 1e-3, f"the prompt's last row differs by {error:.3g}")
    same = a.stdout == b.stdout
    if same:
        expect(np.array_equal(rows[1:], all_rows[len(prompt):]),
               "decode rows differ from --logits-out's")
    expect([int(r.argmax()) for r in rows] == tokens,
           f"ids {tokens} are not their rows' argmax")
    print(f"the prompt's last row within {error:.3g} of --logits-out's; "
          f"ids {'the same' if same else 'differ after a near tie'}")


def case_repeat_times_passes_of_the_same_ids(args):
    # --repeat 3: three timed passes, the same ids as one pass (the first
    # writes the logits, bit for bit a single run's), a line of every
    # pass's speeds, and timing lines no slower than any pass.
    prompt = ",".join(str(i) for i in range(5, 30))
    one = os.path.join(args.workdir, "repeat-one.f32")
    three = os.path.join(args.workdir, "repeat-three.f32")
    a = run([model_run(args), "--prompt-ids", prompt, "-n", "9", "-t", "2",
             "--logits-out", one])
    b = run([model_run(args), "--prompt-ids", prompt, "-n", "9", "-t", "2",
             "--logits-out", three, "--repeat", "3"])
    expect(a.returncode == 0 and b.returncode == 0,
           a.stderr.decode() + b.stderr.decode())
    expect(a.stdout == b.stdout, f"ids: {b.stdout!r} vs {a.stdout!r}")
    expect(open(one, "rb").read() == open(three, "rb").read(),
           "logits of --repeat's first pass differ from a single run's")
    err = b.stderr.decode()
    m = re.search(r"3 passes, prompt eval / eval tokens per second: "
                  r"((?:[0-9.]+/[0-9.]+ ?){3})\n", err)
    expect(m, err)
    passes = [tuple(map(float, p.split("/"))) for p in m.group(1).split()]
    best_prompt = float(re.search(r"prompt eval time = .*?([0-9.]+) tokens per "
                                  r"second", err).group(1))
    best_eval = float(re.search(r"\n[^\n]*  eval time = .*?([0-9.]+) tokens per "
                                r"second", err).group(1))
    # Printed with two decimals: compare at that precision.
    expect(abs(best_prompt - max(p for p, _ in passes)) < 0.02,
           f"prompt eval {best_prompt} vs passes {passes}")
    expect(abs(best_eval - max(e for _, e in passes)) < 0.02,
           f"eval {best_eval} vs passes {passes}")


def case_same_seed_same_text(args):
    def sample(seed):
        out = run([model_run(args), "-p", "The", "-n", "48", "--seed", str(seed),
                   "--temp", "1.0", "--ignore-eos", "-t", "2"])
        expect(out.returncode == 0, out.stderr.decode())
        return out.stdout
    a, b, c = sample(7), sample(7), sample(8)
    expect(a == b, f"seed 7 twice:\n{a!r}\n{b!r}")
    expect(a != c, f"seeds 7 and 8 gave the same 48 tokens: {a!r}")


def case_stops_at_end_of_text(args):
    # Generation stops at the end-of-text token: the greedy continuation of
    # a text whose ids contain EOS ends there, with fewer runs than asked.
    vocab = Vocab(MODEL)
    eos = vocab.tokens.index("<|endoftext|>")
    prompt = tokenize(args, "x = 1\n")
    ids = greedy_ids(args, prompt, 200)
    out = run([model_run(args), "-p", "x = 1\n", "-n", "200", "--temp", "0",
               "-t", "2"])
    expect(out.returncode == 0, out.stderr.decode())
    if eos in ids:
        stop = ids.index(eos)
        want = b"x = 1\n" + vocab.text(ids[:stop]) + b"\n"
        expect(out.stdout == want, f"got {out.stdout!r} want {want!r}")
    else:
        expect(re.search(r"/ +199 runs", out.stderr.decode()),
               out.stderr.decode())


def case_chat_follows_the_template(args):
    # The first answer is the greedy continuation of the ChatML prompt.
    vocab = Vocab(MODEL)
    prompt = "<|im_start|>user\nWhat is a list?<|im_end|>\n<|im_start|>assistant\n"
    ids = greedy_ids(args, tokenize(args, prompt, bos=False, parse_special=True),
                     12, "chat")
    out = run([model_run(args, "chat"), "-cnv", "--temp", "0", "-n", "12",
               "--ignore-eos", "-t", "2"],
              "What is a list?\nAnd a tuple?\n\n".encode())
    expect(out.returncode == 0, out.stderr.decode())
    expect("chat format chatml" in out.stderr.decode(), out.stderr.decode())
    first = out.stdout.split(b"> ")[1]
    expect(first.startswith(vocab.text(ids)),
           f"\n got  {first!r}\n want {vocab.text(ids)!r}")
    expect(out.stdout.count(b"> ") == 3, f"{out.stdout!r}")
    expect(re.search(r"/ +22 runs", out.stderr.decode()), out.stderr.decode())


def case_perplexity_matches_the_reference(args):
    # model-run --perplexity against the reference executor's logits on the
    # same windows: BOS first, second half scored, within 0.1%.
    n = 64
    tokens = tokenize(args, open(EXCERPT, encoding="utf-8").read())
    chunks = len(tokens) // n
    expect(chunks >= 3, f"{len(tokens)} tokens")
    nll, count = 0.0, 0
    for c in range(chunks):
        window = tokens[c * n:(c + 1) * n]
        window[0] = tokens[0]
        out = run([args.reference, MODEL,
                   "--tokens=" + ",".join(map(str, window))])
        expect(out.returncode == 0, out.stderr.decode())
        rows = out.stdout.decode().split("\n")
        for j in range(n // 2, n - 1):
            row = [float(x) for x in rows[j].split()]
            peak = max(row)
            lse = peak + math.log(sum(math.exp(x - peak) for x in row))
            nll += lse - row[tokens[c * n + j + 1]]
            count += 1
    want = math.exp(nll / count)
    out = run([model_run(args), "--perplexity", "-f", EXCERPT, "-c", str(n),
               "-t", "2"])
    expect(out.returncode == 0, out.stderr.decode())
    got = float(re.search(r"PPL = ([0-9.]+)", out.stdout.decode()).group(1))
    print(f"model-run PPL {got:.4f}, reference {want:.4f} over {chunks} "
          f"windows of {n} ({count} predictions)")
    expect(abs(got / want - 1) < 1e-3, f"PPL {got} vs reference {want}")


# ------------------------------------------------------------ KL divergence

KL_WINDOW = 64


def perplexity(args, extra, which="plain", text=EXCERPT):
    return run([model_run(args, which), "--perplexity", "-f", text, "-t", "2"]
               + extra)


def write_kl_base(args, name, which="plain"):
    """BASE (--kl-divergence-base) of `which` on the excerpt, -c 64."""
    path = os.path.join(args.workdir, name)
    out = perplexity(args, ["-c", str(KL_WINDOW), "--kl-divergence-base", path],
                     which)
    expect(out.returncode == 0, out.stderr.decode())
    return path, out


def read_kl_base(path):
    """The header, token ids and float32 rows of a BASE file."""
    import struct
    import numpy as np
    data = open(path, "rb").read()
    magic, version, vocab, window, windows, positions, count = \
        struct.unpack_from("<8sIIIIQQ", data, 0)
    tokens = np.frombuffer(data, "<i4", count, 40)
    rows = np.frombuffer(data, "<f4", offset=40 + 4 * count)
    return (dict(magic=magic, version=version, vocab=vocab, window=window,
                 windows=windows, positions=positions, tokens=count,
                 bytes=len(data)),
            tokens.tolist(), rows.reshape(positions, vocab))


def kl_line(stdout):
    """The `kl-divergence: key=value ...` line, as numbers."""
    m = re.search(r"^kl-divergence: (.*)$", stdout.decode(), re.M)
    expect(m, f"no kl-divergence line in {stdout.decode()!r}")
    return {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


def final_ppl(stdout):
    m = re.search(r"^Final estimate: PPL = ([0-9.]+) \(([0-9]+) predictions\)$",
                  stdout.decode(), re.M)
    expect(m, f"no PPL line in {stdout.decode()!r}")
    return m.group(1), int(m.group(2))


def case_kl_divergence_of_a_model_with_itself_is_zero(args):
    # Writing BASE changes nothing of the perplexity run; the header says
    # what was evaluated; the same model read against it differs nowhere.
    plain = perplexity(args, ["-c", str(KL_WINDOW)])
    expect(plain.returncode == 0, plain.stderr.decode())
    base, out = write_kl_base(args, "kl-self.kld")
    expect(out.stdout == plain.stdout,
           f"\n with BASE {out.stdout!r}\n without   {plain.stdout!r}")
    tokens = tokenize(args, open(EXCERPT, encoding="utf-8").read())
    head, ids, rows = read_kl_base(base)
    windows = len(tokens) // KL_WINDOW
    scored = windows * (KL_WINDOW - 1 - KL_WINDOW // 2)
    want = dict(magic=b"moec-kld", version=1, vocab=8000, window=KL_WINDOW,
                windows=windows, positions=scored, tokens=windows * KL_WINDOW,
                bytes=40 + 4 * windows * KL_WINDOW + 4 * scored * 8000)
    expect(head == want, f"header {head}, want {want}")
    expect(ids == tokens[:windows * KL_WINDOW], "token ids")
    # -c left out: BASE's.
    stats = os.path.join(args.workdir, "kl-self-stats.json")
    out = perplexity(args, ["--kl-divergence-base", base, "--kl-divergence",
                            "--stats", stats])
    expect(out.returncode == 0, out.stderr.decode())
    kl = kl_line(out.stdout)
    for key in ["mean", "mean-unc", "median", "p99", "p99.9", "max",
                "ln-ppl-ratio", "ln-ppl-ratio-unc", "mean-dp", "mean-dp-unc"]:
        expect(kl[key] == 0, f"{key}={kl[key]}, want 0")
    expect(kl["same-top1"] == 1 and kl["positions"] == scored, f"{kl}")
    expect(final_ppl(out.stdout) == final_ppl(plain.stdout),
           f"PPL {final_ppl(out.stdout)}, plain {final_ppl(plain.stdout)}")
    ppl = float(final_ppl(plain.stdout)[0])
    expect(kl["ppl"] == kl["ppl-base"] and abs(kl["ppl"] / ppl - 1) < 1e-6,
           f"ppl {kl['ppl']} ppl-base {kl['ppl-base']}, plain {ppl}")
    import json
    d = json.load(open(stats))
    expect(d["kl_divergence"]["mean"] == 0 and
           d["kl_divergence"]["same_top1"] == 1 and
           d["perplexity"]["predictions"] == scored, f"{d['kl_divergence']}")
    print(out.stdout.decode().split("\n")[-2])


def log_softmax32(logits):
    """model-run's rows: log-softmax in double, rounded to float32."""
    import numpy as np
    x = logits.astype(np.float64)
    peak = logits.max(axis=1).astype(np.float64)
    lse = peak + np.log(np.exp(x - peak[:, None]).sum(axis=1))
    return (x - lse[:, None]).astype(np.float32)


def window_logits(args, which, window):
    import numpy as np
    path = os.path.join(args.workdir, f"kl-logits-{os.path.basename(which)}.bin")
    out = run([model_run(args, which), "--prompt-ids", ",".join(map(str, window)),
               "-n", "1", "-t", "2", "--logits-out", path])
    expect(out.returncode == 0, out.stderr.decode())
    return np.fromfile(path, "<f4").reshape(len(window), -1)


def case_kl_divergence_matches_numpy(args):
    # The example model against itself with 4-bit experts (q4_0): every
    # figure model-run prints, recomputed in numpy from both models' logits
    # (--logits-out on each window), within 1e-6.
    import numpy as np
    quant = os.path.join(args.workdir, "kl-q4_0")
    out = run([args.moec, MODEL, "--target=host", "--quantize-experts=q4_0",
               "-o", quant, "--quiet"])
    expect(out.returncode == 0, out.stderr.decode())
    base, _ = write_kl_base(args, "kl-q4_0.kld")
    stats = os.path.join(args.workdir, "kl-q4_0-stats.json")
    out = perplexity(args, ["-c", str(KL_WINDOW), "--kl-divergence-base", base,
                            "--kl-divergence", "--stats", stats], quant)
    expect(out.returncode == 0, out.stderr.decode())
    got = kl_line(out.stdout)
    alone = perplexity(args, ["-c", str(KL_WINDOW)], quant)
    expect(alone.returncode == 0, alone.stderr.decode())
    expect(final_ppl(out.stdout) == final_ppl(alone.stdout),
           f"PPL {final_ppl(out.stdout)}, alone {final_ppl(alone.stdout)}")

    _, _, base_rows = read_kl_base(base)
    tokens = tokenize(args, open(EXCERPT, encoding="utf-8").read())
    n, first = KL_WINDOW, KL_WINDOW // 2
    b_rows, q_rows, targets = [], [], []
    for c in range(len(tokens) // n):
        window = tokens[c * n:(c + 1) * n]
        window[0] = tokens[0]  # BOS
        for rows, which in [(b_rows, "plain"), (q_rows, quant)]:
            logits = window_logits(args, which, window)
            rows.append(log_softmax32(logits[first:n - 1]))
        targets += tokens[c * n + first + 1:(c + 1) * n]
    b32, q32 = np.concatenate(b_rows), np.concatenate(q_rows)
    # BASE holds the base model's rows (to an ulp of summation order).
    err = np.abs(base_rows.astype(np.float64) - b32).max()
    expect(err <= 4e-6, f"BASE rows differ from numpy's by {err}")
    b, q = base_rows.astype(np.float64), q32.astype(np.float64)
    kld = (np.exp(b) * (b - q)).sum(axis=1)
    at = np.arange(len(targets))
    nll, nll_base = -q[at, targets], -b[at, targets]
    dp = np.exp(-nll) - np.exp(-nll_base)
    same = float((b.argmax(axis=1) == q.argmax(axis=1)).mean())
    count = len(kld)

    def unc(v):  # llama.cpp's standard error of the mean
        return math.sqrt(max(0.0, (v * v).mean() - v.mean() ** 2) / (count - 1))
    want = {"mean": kld.mean(), "median": np.median(kld),
            "p99": np.percentile(kld, 99), "p99.9": np.percentile(kld, 99.9),
            "max": kld.max(), "same-top1": same,
            "ln-ppl-ratio": nll.mean() - nll_base.mean(),
            "mean-dp": dp.mean(), "ppl": math.exp(nll.mean()),
            "ppl-base": math.exp(nll_base.mean()), "positions": count,
            "mean-unc": unc(kld), "mean-dp-unc": unc(dp),
            "ln-ppl-ratio-unc": unc(nll - nll_base),
            "same-top1-unc": math.sqrt(same * (1 - same) / (count - 1))}
    for key, value in want.items():
        expect(abs(got[key] - value) <= 1e-6 * abs(value) + 1e-12,
               f"{key}={got[key]!r}, numpy {value!r}")
    expect(got["mean"] > 1e-5, f"q4_0 experts should differ from f16: {got}")
    import json
    d = json.load(open(stats))["kl_divergence"]
    for key in ["mean", "p99", "p99.9", "same-top1", "ln-ppl-ratio"]:
        expect(d[key.replace("-", "_").replace(".", "_")] == got[key],
               f"--stats {key}")
    print(out.stdout.decode().split("\n")[-2])


# BASE files refused, each one line: (what is done to a good BASE, the
# run's other flags and text, the message).
def _cut(size):
    return lambda path: os.truncate(path, size(os.path.getsize(path)))


def _patch(offset, data):
    def patch(path):
        with open(path, "r+b") as f:
            f.seek(offset)
            f.write(data)
    return patch


def _other_vocabulary(path):
    # A consistent file of a 7999-token vocabulary.
    import struct
    head, ids, rows = read_kl_base(path)
    with open(path, "wb") as f:
        f.write(struct.pack("<8sIIIIQQ", b"moec-kld", 1, 7999, head["window"],
                            head["windows"], head["positions"], head["tokens"]))
        f.write(struct.pack(f"<{len(ids)}i", *ids))
        f.write(rows[:, :7999].tobytes())


def _text_file(args, name, transform):
    path = os.path.join(args.workdir, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(transform(open(EXCERPT, encoding="utf-8").read()))
    return path


KL_BAD = {
    "truncated": (_cut(lambda n: n - 4), lambda a: ([], EXCERPT),
                  "truncated: 7938084 bytes, its header says 7938088"),
    "truncated-header": (_cut(lambda n: 20), lambda a: ([], EXCERPT),
                         "truncated: 20 bytes, shorter than its 40-byte header"),
    "longer": (lambda p: open(p, "ab").write(b"\0" * 8), lambda a: ([], EXCERPT),
               "longer than its header says: 7938096 bytes, its header says "
               "7938088"),
    "wrong-magic": (_patch(0, b"moec-kle"), lambda a: ([], EXCERPT),
                    "not a KL-divergence base file"),
    "other-version": (_patch(8, b"\x02"), lambda a: ([], EXCERPT),
                      "format version 2; this model-run reads version 1"),
    "other-vocabulary": (_other_vocabulary, lambda a: ([], EXCERPT),
                         "written by a model with a vocabulary of 7999 tokens; "
                         "this model has 8000"),
    "other-window": (lambda p: None, lambda a: (["-c", "32"], EXCERPT),
                     "written with -c 64; this run has -c 32"),
    "other-text": (lambda p: None,
                   lambda a: ([], _text_file(
                       a, "kl-other.txt",
                       lambda t: t[:100].replace("e", "a") + t[100:])),
                   "written for a different text: token "),
    "longer-text": (lambda p: None,
                    lambda a: ([], _text_file(a, "kl-twice.txt",
                                              lambda t: t + t)),
                    "written for a different text: 8 windows of 64 there, 16 "
                    "here"),
}


def kl_bad_case(args, name, damage, flags, message):
    base, _ = write_kl_base(args, f"kl-bad-{name}.kld")
    damage(base)
    extra, text = flags(args)
    out = perplexity(args, ["--kl-divergence-base", base, "--kl-divergence"] +
                     extra, text=text)
    err = out.stderr.decode()
    expect(out.returncode == 1, f"exit code {out.returncode}, stderr {err!r}")
    lines = [l for l in err.split("\n") if l]
    expect(len(lines) == 1, f"expected one line, got {err!r}")
    want = f"model-run: error: --kl-divergence-base: {base}: "
    expect(lines[0].startswith(want) and message in lines[0],
           f"expected {want!r}...{message!r}, got {lines[0]!r}")
    print(lines[0])


def case_stats_routing_matches_the_reference(args):
    # --stats records where every token went; on the same tokens the
    # reference executor routes alike (except within rounding of a tie).
    import json
    text = open(EXCERPT, encoding="utf-8").read()[:400]
    tokens = tokenize(args, text)
    stats = os.path.join(args.workdir, "stats.json")
    out = run([model_run(args), "--prompt-ids", ",".join(map(str, tokens)),
               "-n", "4", "-t", "2", "--stats", stats])
    expect(out.returncode == 0, out.stderr.decode())
    d = json.load(open(stats))
    r = d["routing"]
    k, layers, experts = d["model"]["top_k"], d["model"]["layers"], d["model"]["experts"]
    n = len(tokens) + 3  # the prompt, then 3 of the 4 generated tokens
    expect(r["tokens"] == n, f"{r['tokens']} tokens recorded, want {n}")
    expect(d["run"]["prompt_tokens"] == len(tokens) and
           d["run"]["generated_tokens"] == 4, f"{d['run']}")
    trace = {(t[1], t[2]): set(t[3:]) for t in r["trace"]}
    expect(len(trace) == n * layers, f"{len(trace)} trace rows")
    # counts and repeat probability are what the trace says.
    for l in range(layers):
        counts = [0] * experts
        for p in range(n):
            for e in trace[(p, l)]:
                counts[e] += 1
        expect(counts == r["counts"][l], f"layer {l} counts")
        again = sum(len(trace[(p, l)] & trace[(p + 1, l)]) for p in range(n - 1))
        expect(abs(again / (k * (n - 1)) - r["repeat_probability"][l]) < 1e-5,
               f"layer {l} repeat probability")
    routing = os.path.join(args.workdir, "reference-routing.txt")
    ref = run([args.reference, MODEL, "--tokens=" + ",".join(map(str, tokens)),
               "--routing-out=" + routing])
    expect(ref.returncode == 0, ref.stderr.decode())
    compared = differ = 0
    for line in open(routing):
        p, l, margin, *ids = line.split()
        if float(margin) < 1e-5:
            continue
        compared += 1
        if trace[(int(p), int(l))] != set(map(int, ids)):
            differ += 1
    expect(compared > 0.9 * len(tokens) * layers and differ == 0,
           f"{differ} of {compared} routings differ from the reference")
    # routing.counts is what the compiler's --calibration reads.
    bundle = os.path.join(args.workdir, "calibrated.moeb")
    out = run([args.moec, "bundle", MODEL, "--memory-budget=40MiB",
               "--calibration=" + stats, "-o", bundle])
    expect(out.returncode == 0, out.stderr.decode())
    print(f"{compared} routings equal the reference's; repeat probability per "
          f"layer {r['repeat_probability']}")


# ------------------------------------------------------------ streaming

def bundle_extents(path):
    """(offset, size) of every expert extent (runtime/abi/moec_bundle.h)."""
    import struct
    with open(path, "rb") as f:
        head = f.read(112)
        (tables, metadata, strings, tensors, experts) = (
            struct.unpack_from("<Q", head, 32)[0],
            struct.unpack_from("<Q", head, 40)[0],
            struct.unpack_from("<Q", head, 48)[0],
            struct.unpack_from("<I", head, 56)[0],
            struct.unpack_from("<I", head, 60)[0])
        f.seek(tables + metadata + strings + tensors * 80)
        table = f.read(experts * 104)
    return [struct.unpack_from("<QQ", table, i * 104 + 8) for i in range(experts)]


def run_logits(args, budget, extra, bundle=None):
    logits = os.path.join(args.workdir, "logits.bin")
    stats = os.path.join(args.workdir, "stream-stats.json")
    ids = tokenize(args, open(EXCERPT, encoding="utf-8").read()[:300])
    cmd = [model_run(args), "--prompt-ids", ",".join(map(str, ids)), "-n", "24",
           "-t", "2", "--logits-out", logits, "--stats", stats] + extra
    if budget:
        cmd += ["--memory-budget", budget]
    if bundle:
        cmd += ["-m", bundle]
    out = run(cmd)
    if out.returncode != 0:
        return None, None, out
    import json
    return open(logits, "rb").read(), json.load(open(stats)), out


def case_streaming_gives_the_resident_logits(args):
    # Experts streamed through a cache smaller than the experts give the
    # same logits, bit for bit, as all experts resident: every policy and
    # I/O engine, with and without prefetch; caches of 7 experts (one token
    # per forward call), 15 (three) and 36 of the 96 (whole batches).
    want, resident, out = run_logits(args, None, [])
    expect(want is not None, out.stderr.decode())
    expect(resident["experts"]["plan"] == "all-resident", f"{resident['experts']}")
    for budget in ["13M", "16M", "24M"]:
        for extra in [["--cache-policy", "lru", "--io", "uring"],
                      ["--cache-policy", "lfu", "--io", "pread"],
                      ["--no-prefetch", "--io", "auto"]]:
            got, stats, out = run_logits(args, budget, extra)
            expect(got is not None, f"{budget} {extra}: {out.stderr.decode()}")
            e = stats["experts"]
            expect(e["plan"] == "streaming" and e["misses"] > 0 and
                   e["evictions"] > 0 and e["bytes_read"] > 0,
                   f"{budget} {extra}: {e}")
            expect(got == want, f"{budget} {extra}: logits differ from the "
                   "all-resident run")
            print(f"{budget} {' '.join(extra)}: hit rate {e['hit_rate']}, "
                  f"{e['reads']} reads, {e['evictions']} evictions, "
                  f"prefetch {e['prefetch']}")


def broken_copy(args, name, damage):
    src = os.path.join(args.workdir, "plain", "model.moeb")
    dst = os.path.join(args.workdir, name)
    shutil.copyfile(src, dst)
    damage(dst)
    return dst


def case_streaming_names_a_corrupt_extent(args):
    def flip_every_extent(path):
        with open(path, "r+b") as f:
            for offset, size in bundle_extents(path):
                f.seek(offset + size // 2)
                b = f.read(1)
                f.seek(offset + size // 2)
                f.write(bytes([b[0] ^ 0x40]))
    bad = broken_copy(args, "corrupt.moeb", flip_every_extent)
    # Streaming meets it when it reads an expert.
    _, _, out = run_logits(args, "13M", [], bad)
    err = out.stderr.decode()
    expect(out.returncode == 1 and re.fullmatch(
        r"model-run: error: .*corrupt\.moeb: offset [0-9]+: extent of layer "
        r"[0-9]+ expert [0-9]+: checksum mismatch\n", err), f"{err!r}")
    # All resident: opening reads (and checks) every extent.
    _, _, out = run_logits(args, None, [], bad)
    err = out.stderr.decode()
    expect(out.returncode == 1 and "checksum mismatch" in err and
           err.count("\n") == 1, f"{err!r}")


def case_streaming_names_a_truncated_bundle(args):
    def cut(path):
        os.truncate(path, os.path.getsize(path) - 4096)
    bad = broken_copy(args, "truncated.moeb", cut)
    _, _, out = run_logits(args, "13M", [], bad)
    err = out.stderr.decode()
    expect(out.returncode == 1 and "truncated or corrupt" in err and
           err.count("\n") == 1, f"{err!r}")


def case_streaming_budget_below_the_minimum(args):
    _, _, out = run_logits(args, "8M", [])
    err = out.stderr.decode()
    expect(out.returncode == 1 and re.fullmatch(
        r"model-run: error: --memory-budget: 8388608 bytes is too small for "
        r"this model; it needs at least [0-9]+ bytes \(.*\)\n", err), f"{err!r}")


# Every bad flag: exit code 1 and one line naming it.
BAD = {
    "unknown-option": (["-p", "x", "--frobnicate"], "unknown option '--frobnicate'"),
    "n-not-a-number": (["-p", "x", "-n", "many"], "-n: 'many' is not an integer"),
    "n-out-of-range": (["-p", "x", "-n", "-2"], "-n: -2 is out of range"),
    "temp-negative": (["-p", "x", "--temp", "-1"], "--temp: -1 is out of range"),
    "temp-nan": (["-p", "x", "--temp", "nan"], "--temp: 'nan' is not a number"),
    "top-k-negative": (["-p", "x", "--top-k", "-3"], "--top-k: -3 is out of range"),
    "top-p-zero": (["-p", "x", "--top-p", "0"], "--top-p: 0 is out of range"),
    "top-p-above-one": (["-p", "x", "--top-p", "1.5"], "--top-p: 1.5 is out of range"),
    "min-p-above-one": (["-p", "x", "--min-p", "2"], "--min-p: 2 is out of range"),
    "repeat-penalty-zero": (["-p", "x", "--repeat-penalty", "0"],
                            "--repeat-penalty: 0 is out of range"),
    "seed-negative": (["-p", "x", "--seed", "-1"], "--seed: '-1' is not a seed"),
    "threads-zero": (["-p", "x", "-t", "0"], "-t: 0 is out of range"),
    "missing-value": (["-p"], "-p: needs a value"),
    "unreadable-file": (["-f", "/nonexistent/prompt.txt"],
                        "-f: cannot read /nonexistent/prompt.txt: No such file"),
    "two-prompts": (["-p", "x", "-f", "/dev/null"],
                    "-f: the prompt is already given (-p)"),
    "no-prompt": ([], "no prompt: give -p TEXT"),
    "flag-with-value": (["-p", "x", "--ignore-eos=1"], "--ignore-eos: takes no value"),
    "memory-budget-too-small": (["-p", "x", "--memory-budget", "1M"],
                                "--memory-budget: 1048576 bytes is too small"),
    "cache-policy-unknown": (["-p", "x", "--cache-policy", "fifo"],
                             "--cache-policy: 'fifo' is not a policy (lru, lfu)"),
    "batch-zero": (["-p", "x", "-b", "0"], "-b: 0 is out of range (1..2147483647)"),
    "io-unknown": (["-p", "x", "--io", "aio"],
                   "--io: 'aio' is not an I/O engine (auto, uring, pread)"),
    "memory-budget-not-a-size": (["-p", "x", "--memory-budget", "12X"],
                                 "--memory-budget: '12X' is not a size"),
    "chat-without-template": (["-cnv"], "-cnv: the model has no chat template"),
    "stats-unwritable": (["-p", "x", "-n", "1", "--stats", "/nonexistent/s.json"],
                         "--stats: cannot write /nonexistent/s.json"),
    "perplexity-needs-file": (["--perplexity", "-p", "x"],
                              "--perplexity: needs the text to score (-f FILE)"),
    "perplexity-window-too-large": (["--perplexity", "-f", EXCERPT, "-c", "100000"],
                                    "-c: 100000 is more than the model's context"),
    "logits-out-needs-ids": (["-p", "x", "--logits-out", "l.bin"],
                             "--logits-out: needs --prompt-ids"),
    "generated-logits-out-needs-ids": (
        ["-p", "x", "--generated-logits-out", "l.bin"],
        "--generated-logits-out: needs --prompt-ids"),
    "generated-logits-out-with-logits-out": (
        ["--prompt-ids", "1", "--logits-out", "a.bin", "--generated-logits-out",
         "b.bin"],
        "--generated-logits-out: not with --logits-out"),
    "warmup-needs-ids": (["-p", "x", "--warmup"], "--warmup: needs --prompt-ids"),
    "repeat-needs-ids": (["-p", "x", "--repeat", "2"], "--repeat: needs --prompt-ids"),
    "repeat-zero": (["--prompt-ids", "1", "--repeat", "0"],
                    "--repeat: 0 is out of range (1..1000000)"),
    "repeat-with-stats": (["--prompt-ids", "1", "--repeat", "2", "--stats", "s.json"],
                          "--repeat: every pass would enter --stats"),
    "warmup-with-stats": (["--prompt-ids", "1", "--warmup", "--stats", "s.json"],
                          "--warmup: the warm-up pass would enter --stats"),
    "ids-outside-vocabulary": (["--prompt-ids", "1,99999"],
                               "--prompt-ids: 99999 is outside the vocabulary"),
    "ids-and-text": (["--prompt-ids", "1", "-p", "x"],
                     "--prompt-ids: give the prompt as text"),
    "prompt-beyond-context": (["-p", "word " * 600, "-n", "1"],
                              "does not fit the model's context of 512"),
    "kl-divergence-needs-base": (["--perplexity", "-f", EXCERPT, "--kl-divergence"],
                                 "--kl-divergence: needs --kl-divergence-base FILE"),
    "kl-divergence-base-needs-perplexity": (
        ["-p", "x", "--kl-divergence-base", "b.kld"],
        "--kl-divergence-base: needs --perplexity -f FILE"),
    "kl-divergence-needs-perplexity": (
        ["-p", "x", "--kl-divergence-base", "b.kld", "--kl-divergence"],
        "--kl-divergence: needs --perplexity -f FILE"),
    "kl-divergence-base-unreadable": (
        ["--perplexity", "-f", EXCERPT, "--kl-divergence-base",
         "/nonexistent/b.kld", "--kl-divergence"],
        "--kl-divergence-base: /nonexistent/b.kld: cannot read: No such file"),
    "kl-divergence-base-not-a-base": (
        ["--perplexity", "-f", EXCERPT, "--kl-divergence-base", EXCERPT,
         "--kl-divergence"],
        "python-docs-heldout-excerpt.txt: not a KL-divergence base file"),
    "kl-divergence-base-unwritable": (
        ["--perplexity", "-f", EXCERPT, "-c", "64", "--kl-divergence-base",
         "/nonexistent/b.kld"],
        "--kl-divergence-base: cannot write /nonexistent/b.kld.tmp"),
}


def bad_case(args, flags, message):
    out = run([model_run(args)] + flags)
    err = out.stderr.decode()
    expect(out.returncode == 1, f"exit code {out.returncode}, stderr {err!r}")
    lines = [l for l in err.split("\n") if l and not l.startswith("model-run: sampling seed")]
    expect(len(lines) == 1, f"expected one line, got {err!r}")
    expect(lines[0].startswith("model-run: error: ") and message in lines[0],
           f"expected {message!r} in {lines[0]!r}")
    print(lines[0])


CASES = {name[len("case_"):].replace("_", "-"): fn
         for name, fn in globals().items() if name.startswith("case_")}
for _name, (_flags, _message) in BAD.items():
    CASES["bad-flag." + _name] = (lambda f, m: lambda a: bad_case(a, f, m))(
        _flags, _message)
for _name, (_damage, _flags, _message) in KL_BAD.items():
    CASES["bad-kl-base." + _name] = (
        lambda n, d, f, m: lambda a: kl_bad_case(a, n, d, f, m))(
            _name, _damage, _flags, _message)


def setup(args):
    plain = os.path.join(args.workdir, "plain")
    chat = os.path.join(args.workdir, "chat")
    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)
    out = run([args.moec, MODEL, "--target=host", "-o", plain, "--quiet"])
    expect(out.returncode == 0, out.stderr.decode())
    # The example model with a ChatML template added (its vocabulary spells
    # <|im_start|> in ordinary tokens, which changes nothing for the format).
    reader = gguf.GGUFReader(MODEL)
    copy = os.path.join(args.workdir, "chat.gguf")
    writer = gguf.GGUFWriter(copy, arch="qwen3moe")
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            sub = field.types[-1]
            if sub == gguf.GGUFValueType.STRING:
                value = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
            else:
                value = [field.parts[i][0].item() for i in field.data]
            writer.add_array(name, value)
        elif vtype == gguf.GGUFValueType.STRING:
            writer.add_string(name, bytes(field.parts[field.data[0]]).decode())
        else:
            writer.add_key_value(name, field.parts[field.data[0]][0].item(), vtype)
    writer.add_chat_template(CHATML)
    for t in reader.tensors:
        writer.add_tensor(t.name, t.data, raw_shape=list(reversed(t.shape.tolist())),
                          raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    out = run([args.moec, copy, "--target=host", "-o", chat, "--quiet"])
    expect(out.returncode == 0, out.stderr.decode())
    print(f"compiled {plain} and {chat}")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True)
    p.add_argument("--moec")
    p.add_argument("--reference")
    p.add_argument("--setup", action="store_true")
    p.add_argument("--case")
    p.add_argument("--list", action="store_true")
    args = p.parse_args()
    if args.list:
        print("\n".join(CASES))
        return 0
    try:
        if args.setup:
            setup(args)
        else:
            CASES[args.case](args)
    except Failure as e:
        print(f"FAIL: {e}")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
