#!/usr/bin/env bash
# `make demo` as it runs on an AVX2-only CPU, on a CPU that has AVX-512 (and native bf16).
#
#     sudo bash benchmarks/demo_as_avx2.sh        # root: it mounts over /proc/cpuinfo
#
# Why: the demo's time goal is for the AVX2-only machines (bf16 emulated there, so
# `precision = auto` runs fp32), and sessions do not choose their CPU. Two things make this CPU
# behave as one of those for the run:
#   - /proc/cpuinfo without its avx512*/amx*/avx_vnni flags, bind-mounted in a private mount
#     namespace (`unshare -m`, nothing outside the command sees it): orcac's precision = auto
#     reads the flags there and chooses fp32, as it does on AVX2;
#   - torch's, oneDNN's and MKL's kernels held to AVX2 (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA,
#     MKL_ENABLE_INSTRUCTIONS), so the matmuls run the code they run there.
# What it cannot imitate: the other machine's clock, caches and memory bandwidth. Read its time as
# "this CPU limited to AVX2", and say so beside the figure.
#
# The answer cache is an empty folder of its own and the example's .orca/ is removed first, so
# every teacher call is made; `make demo` then prints its own tables, and `time` the wall clock.
set -euo pipefail
cd "$(dirname "$0")/.."

flags=$(mktemp)
cache=$(mktemp -d)
trap 'rm -rf "$flags" "$cache"' EXIT
sed -E '/^flags/ s/ (avx512[a-z0-9_]*|amx[a-z0-9_]*|avx_vnni)\b//g' /proc/cpuinfo >"$flags"
rm -rf examples/cautious_reasoner/.orca

unshare --mount bash -c '
  mount --bind "$1" /proc/cpuinfo
  grep -q avx512 /proc/cpuinfo && { echo "still avx512 in /proc/cpuinfo" >&2; exit 1; }
  export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ORCAC_ANSWER_CACHE="$2"
  .venv/bin/python -c "import torch; print(\"torch kernels:\", torch.backends.cpu.get_cpu_capability())"
  time make demo
' _ "$flags" "$cache"
