"""GPU check of train/varlen.py's packed attention: same numbers as per-segment SDPA, and its speed.

    python3 bench/train/varlen_check.py --out $OUT/varlen-check.json

One packed row of the 8B shape's attention (32 query heads, 8 key/value heads, head dim 128,
bf16) cut into example-length segments: the op's forward and backward against torch SDPA run
segment by segment (what Unsloth falls back to on torch < 2.12), eager and under
torch.compile, then the time of forward+backward for each path and, as the floor, one causal
SDPA over the whole row (no segment boundaries, not a correct result for packed data).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def segments_reference(q, k, v, cu):  # type: ignore[no-untyped-def]

    from train.varlen import _reference

    return _reference(q, k, v, cu, True, None)


def timed(fn, repeats: int = 20) -> float:  # type: ignore[no-untyped-def]
    import torch

    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    import torch

    from train.varlen import varlen_attention

    g = torch.Generator().manual_seed(0)
    lengths: list[int] = []
    while sum(lengths) < args.tokens:
        lengths.append(int(torch.randint(40, 900, (1,), generator=g)))
    lengths[-1] -= sum(lengths) - args.tokens
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device="cuda")
    shape = dict(device="cuda", dtype=torch.bfloat16)
    q = torch.randn(args.tokens, 32, 128, **shape, requires_grad=True)
    k = torch.randn(args.tokens, 8, 128, **shape, requires_grad=True)
    v = torch.randn(args.tokens, 8, 128, **shape, requires_grad=True)
    grad = torch.randn_like(q)

    def ours():  # type: ignore[no-untyped-def]
        return varlen_attention(
            q, k, v, cu, cu, max(lengths), max(lengths), window_size=(-1, 0), enable_gqa=True
        )

    compiled = torch.compile(ours, fullgraph=True)
    result: dict[str, object] = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                                 "tokens": args.tokens, "segments": len(lengths)}  # fmt: skip
    outputs = {}
    for name, fn in (
        ("eager", ours),
        ("compiled", compiled),
        ("reference", lambda: segments_reference(q, k, v, cu)),
    ):
        out = fn()
        grads = torch.autograd.grad(out, (q, k, v), grad)
        outputs[name] = (out.float(), *(x.float() for x in grads))
    for name in ("eager", "compiled"):
        result[f"{name}_max_abs_error"] = [
            float((a - b).abs().max()) for a, b in zip(outputs[name], outputs["reference"], strict=True)
        ]
    result["reference_max_abs"] = [float(x.abs().max()) for x in outputs["reference"]]

    def backward_of(fn):  # type: ignore[no-untyped-def]
        return lambda: torch.autograd.grad(fn(), (q, k, v), grad)

    qd, kd, vd = (x.detach().transpose(0, 1).unsqueeze(0).requires_grad_(True) for x in (q, k, v))

    def whole_row():  # type: ignore[no-untyped-def]
        out = torch.nn.functional.scaled_dot_product_attention(qd, kd, vd, is_causal=True, enable_gqa=True)
        return torch.autograd.grad(out, (qd, kd, vd), torch.ones_like(out))

    result["ms_fwd_bwd"] = {
        "assay_varlen": timed(backward_of(ours)),
        "assay_varlen_compiled": timed(backward_of(compiled)),
        "per_segment_sdpa": timed(backward_of(lambda: segments_reference(q, k, v, cu)), repeats=5),
        "whole_row_causal_sdpa_floor": timed(whole_row),
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
