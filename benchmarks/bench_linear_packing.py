"""The decode step's linear layers: F.linear against weights packed once, at SmolLM2-135M's shapes.

    .venv/bin/python -m benchmarks.bench_linear_packing [--precision fp32|bf16] [--rows 16,64,128]

For the AVX2-only machines' fp32, hold the kernels to AVX2:
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 .venv/bin/python -m ...

One thread, CPU seconds, best of three. Per row count M (the decode step's batch): the 30 layers'
products (q, k, v, o, gate, up, down; "fused": q/k/v as one product and gate/up as one, as
engine._Packed runs them) and the vocabulary head, each through

  F.linear          what the model's modules do: MKL's sgemm on the weight as stored in fp32,
                    oneDNN's matmul (laying the weight out again at each call) in bf16;
  mkl packed        torch.ops.mkl._mkl_linear on a weight packed by _mkl_reorder_linear_weight
                    for M rows (fp32 only);
  onednn packed     torch.ops.mkldnn._linear_pointwise on a weight in oneDNN's blocked layout
                    (_reorder_linear_weight), packed for M rows or, "any M", for none in particular
                    (what the engine uses: the same copy serves the decode step and the prefill).

`maxerr` is q's largest difference from F.linear's output.
"""

from __future__ import annotations

import argparse
import time

HIDDEN, INTERMEDIATE, KV, VOCAB, LAYERS = 576, 1536, 192, 49152, 30
SHAPES = {
    "q": (HIDDEN, HIDDEN),
    "k": (KV, HIDDEN),
    "v": (KV, HIDDEN),
    "o": (HIDDEN, HIDDEN),
    "gate": (INTERMEDIATE, HIDDEN),
    "up": (INTERMEDIATE, HIDDEN),
    "down": (HIDDEN, INTERMEDIATE),
    "qkv": (HIDDEN + 2 * KV, HIDDEN),
    "gate_up": (2 * INTERMEDIATE, HIDDEN),
}
SPLIT = ["q", "k", "v", "o", "gate", "up", "down"]
FUSED = ["qkv", "o", "gate_up", "down"]


def best_ms(run, repeats: int) -> float:
    run()
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for _ in range(repeats):
            run()
        best = min(best, (time.process_time() - started) / repeats)
    return best * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--rows", default="16,64,128")
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    weights = {name: (torch.randn(shape) * 0.02).to(dtype) for name, shape in SHAPES.items()}
    weights["head"] = (torch.randn(VOCAB, HIDDEN) * 0.02).to(dtype)
    print(f"{args.precision}; torch CPU capability {torch.backends.cpu.get_cpu_capability()}; one thread, CPU ms")
    for rows in [int(m) for m in args.rows.split(",")]:
        inputs = {n: torch.randn(rows, n).to(dtype) for n in (HIDDEN, INTERMEDIATE)}
        paths = {"F.linear": lambda name, x: F.linear(x, weights[name])}
        if dtype == torch.float32:
            mkl = {name: torch.ops.mkl._mkl_reorder_linear_weight(w, rows) for name, w in weights.items()}
            paths["mkl packed"] = lambda name, x, mkl=mkl, rows=rows: torch.ops.mkl._mkl_linear(
                x, mkl[name], weights[name], None, rows
            )
        for label, hint in (("onednn packed", rows), ("onednn packed, any M", None)):
            packed = {name: torch.ops.mkldnn._reorder_linear_weight(w, hint) for name, w in weights.items()}
            paths[label] = lambda name, x, packed=packed: torch.ops.mkldnn._linear_pointwise(
                x, packed[name], None, "none", [], ""
            )
        for label, linear in paths.items():
            error = (F.linear(inputs[HIDDEN], weights["q"]).float() - linear("q", inputs[HIDDEN]).float()).abs().max()
            cells = []
            for names in (SPLIT, FUSED):
                layer = [(name, inputs[SHAPES[name][1]]) for name in names]
                cells.append(LAYERS * best_ms(lambda layer=layer, linear=linear: [linear(n, x) for n, x in layer], 20))
            head = best_ms(lambda linear=linear, x=inputs[HIDDEN]: linear("head", x), 3)
            print(
                f"M={rows:4} {label:21} | 30 layers {cells[0]:7.1f} ms, fused {cells[1]:7.1f} ms "
                f"| head {head:6.1f} ms | maxerr {error:.1e}",
                flush=True,
            )


if __name__ == "__main__":
    main()
