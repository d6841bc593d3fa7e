#!/usr/bin/env bash
# The demo's spec at two commits, in fp32, side by side: does a refactor change behaviour?
#   bash benchmarks/demo_before_after.sh 6cc0f6e 975284f
# Each commit's own example runs (plan, build, train, eval) in a copy, with `precision = fp32`
# in its teacher and train blocks (bf16 autocast and emulation differ by CPU) and no answer
# cache; then train's and eval's output are compared with the seconds masked.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d)"
run() {  # $1 commit, $2 name
  git -C "$ROOT" worktree add -q --detach "$WORK/$2" "$1"
  cp -r "$WORK/$2/examples/cautious_reasoner" "$WORK/$2-demo"
  rm -rf "$WORK/$2-demo/.orca"
  sed -i '0,/^teacher smol {$/s//teacher smol {\n  precision = fp32/; 0,/^train {$/s//train {\n  precision = fp32/' "$WORK/$2-demo/cautious.orca"
  (cd "$WORK/$2-demo" && for c in plan build train eval; do
     PYTHONPATH="$WORK/$2" ORCAC_ANSWER_CACHE=off LITELLM_LOCAL_MODEL_COST_MAP=True HF_HUB_OFFLINE=1 \
       TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
       "$ROOT/.venv/bin/python" -m orcac.cli "$c" cautious.orca > "$c.out" 2> "$c.err"
   done)
}
run "$1" before & run "$2" after & wait
mask() { sed -E 's/[0-9]+(\.[0-9]+)?s\b/Ns/g; s/[0-9]+m[0-9]+s/T/g' "$1"; }
for f in train.out eval.out eval.err; do
  if diff <(mask "$WORK/before-demo/$f") <(mask "$WORK/after-demo/$f") > /dev/null; then echo "$f: the same"; else echo "$f: DIFFERS"; fi
done
cat "$WORK/after-demo/eval.out"
git -C "$ROOT" worktree remove --force "$WORK/before"; git -C "$ROOT" worktree remove --force "$WORK/after"
