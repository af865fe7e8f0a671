#!/usr/bin/env bash
# bench/pair/pair.sh - builds bench/pair/pair.c against two compiled
# models and runs it: B's speed over A's, prefill and decode, with both in
# one process and their passes alternated (pair.c says how).
#
#   bash bench/pair/pair.sh OUT_A OUT_B [PASSES]
#
# OUT_A, OUT_B: `moec MODEL -o OUT` directories (libmodel.a, model.h,
# model.moeb) of two builds of the compiler on one model. OUT_B may lack
# model.moeb when both builds have one layout: B then reads A's bundle
# (the bundle depends on the model and the plan, not on the kernels). Every
# global symbol each libmodel.a defines gets the prefix A_ or B_ (objcopy
# --redefine-syms), so the two runtimes and their kernels link side by side.
# Work files go to $PAIR_DIR (default: a temporary directory, removed).
set -euo pipefail
[[ $# -ge 2 ]] || { echo "usage: pair.sh OUT_A OUT_B [PASSES]" >&2; exit 2; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
a=$1 b=$2 passes=${3:-10}
cc=${CC:-clang-22}
for d in "$a" "$b"; do
  [[ -f $d/libmodel.a && -f $d/model.h ]] || { echo "pair.sh: $d has no libmodel.a and model.h" >&2; exit 1; }
done
[[ -f $a/model.moeb ]] || { echo "pair.sh: $a has no model.moeb" >&2; exit 1; }
work=${PAIR_DIR:-$(mktemp -d)}
[[ -n ${PAIR_DIR:-} ]] || trap 'rm -rf "$work"' EXIT
for side in A B; do
  dir=$a; [[ $side == B ]] && dir=$b
  nm --defined-only -g "$dir/libmodel.a" 2>/dev/null |
    awk -v p="${side}_" 'NF == 3 { print $3, p $3 }' | sort -u > "$work/$side.syms"
  objcopy --redefine-syms="$work/$side.syms" "$dir/libmodel.a" "$work/$side.a"
done
"$cc" -O2 -I"$a" "$here/pair.c" "$work/A.a" "$work/B.a" -fuse-ld=lld \
  -lstdc++ -lpthread -lm -luring -lxxhash -o "$work/pair"
bundle_b=$a/model.moeb
[[ -f $b/model.moeb ]] && bundle_b=$b/model.moeb
"$work/pair" "$a/model.moeb" "$bundle_b" "$passes"
