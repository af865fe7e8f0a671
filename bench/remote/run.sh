#!/usr/bin/env bash
# The decode/prefill benchmark on a machine without a toolchain, from a pack
# made by bench/remote/pack.sh (which copies this script into it):
#
#   bash PACK/run.sh [ROUNDS] [THREADS]     (defaults: 3 rounds, 2 threads)
#
# Synthesizes the benchmark model (moec synth, deterministic: the GGUF the
# pack's code was compiled from), writes its bundle for the pack's target,
# then ROUNDS times, one after the other: membw (1 and 4 streams per
# thread) and int8peak on THREADS
# threads, model-run (the 128 prompt ids, 64 decode steps, --warmup) and
# llama-bench (pp128 and tg64, one repetition after its own warm-up).
# Everything goes to standard output and to $OUT/remote-bench.log (or
# PACK/remote-bench.log without OUT); bench/remote/summarize.py turns that
# log into the benchmark's row. Needs about 10 GB of disk under $TMPDIR.
set -uo pipefail
PACK=$(cd "$(dirname "$0")" && pwd)
ROUNDS=${1:-3}
THREADS=${2:-2}
LOG=${OUT:-$PACK}/remote-bench.log
exec > >(tee "$LOG") 2>&1
cd "$PACK" || exit 1
export LD_LIBRARY_PATH=$PACK/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
T0=$SECONDS
TARGET=$(cat target)
WORK=${TMPDIR:-/tmp}/moec-remote-bench
mkdir -p "$WORK"

echo "== machine"
echo "cpus $(nproc)"
echo "threads $THREADS"
echo "target $TARGET"
grep -m1 "model name" /proc/cpuinfo
echo "flags$(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2)"
free -g | head -2

unpack() {
  [[ -x "${1%.xz}" ]] && return 0
  xz -d -k -f "$1" 2>/dev/null || python3 -c \
    "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[1][:-3], 'wb'))" "$1"
}
for f in moec.xz llama-bench.xz; do
  unpack "$f" || { echo "run.sh: cannot decompress $f (no xz, no python3)"; exit 1; }
  chmod +x "${f%.xz}"
done

echo "== synth ($((SECONDS - T0)) s)"
./moec synth --family=qwen3moe --preset=bench --vocab=vocab.gguf -o "$WORK/m.gguf" || exit 1
echo "== inspect"
./moec inspect "$WORK/m.gguf" || exit 1
echo "== bundle ($((SECONDS - T0)) s)"
./moec bundle "$WORK/m.gguf" --target="$TARGET" -o "$WORK/model.moeb" || exit 1
PROMPT=$(cat prompt.txt)
for r in $(seq "$ROUNDS"); do
  echo "== round $r ($((SECONDS - T0)) s) load $(cut -d' ' -f1-3 /proc/loadavg)"
  for streams in 1 4; do ./membw -t "$THREADS" -s 1024 -r 5 -p "$streams" | tail -n 1; done
  ./int8peak -t "$THREADS" -r 5 | tail -n 1
  ./model-run -m "$WORK/model.moeb" --prompt-ids "$PROMPT" -n 65 -t "$THREADS" --warmup \
    2>&1 >"$WORK/ids.txt" | grep -E "eval time|load time"
  echo "ids $(cat "$WORK/ids.txt")"
  ./llama-bench -m "$WORK/m.gguf" -p 128 -n 64 -t "$THREADS" -r 1 2>&1 | grep -E '^\| |^build'
done
echo "== done ($((SECONDS - T0)) s)"
rm -f "$WORK/model.moeb" "$WORK/m.gguf"
