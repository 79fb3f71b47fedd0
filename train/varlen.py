"""Packed (variable-length) attention for torch builds that lack `torch.nn.attention.varlen`'s GQA.

Why: with packing, Unsloth attends within each packed example. Its fast route is torch's
`varlen_attn`, which it loads only when that function takes `enable_gqa` (torch >= 2.12).
Older builds (the lent H200 runs torch 2.11) fall back to one SDPA call per run of equal
segment lengths: thousands of small kernels per micro-batch, about a fifth of the step at
the 8B shape (bench/train). The kernel itself is there in every recent torch: ATen's
FlashAttention-2 forward/backward take cumulative sequence lengths, and FlashAttention-2
handles grouped-query heads natively. This module wraps them as a `torch.library` custom op
(traceable by torch.compile, which Unsloth runs each decoder block under) and hands it to
Unsloth as its varlen kernel. On CPU the op computes the same result per segment with SDPA,
so its plumbing (shapes, GQA, gradients) is testable without a GPU.

`ASSAY_PACKED_ATTENTION=segments` keeps Unsloth's per-segment path (for benchmarks).
"""

# No `from __future__ import annotations`: torch.library reads these hints at import time, and
# torch 2.11 understands `Optional[float]` but not every spelling of it.
import itertools
import os
from typing import Any, Optional

import torch
from torch import Tensor

MaybeFloat = Optional[float]  # noqa: UP045 - the spelling every torch.library version reads

ENV_SWITCH = "ASSAY_PACKED_ATTENTION"


def _segments(cu_seqlens: Tensor) -> list[tuple[int, int]]:
    bounds = cu_seqlens.tolist()
    return [(int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]


def _reference(
    q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor, is_causal: bool, scale: float | None
) -> Tensor:
    """Per-segment SDPA over (tokens, heads, dim) rows: the CPU path and the GPU check."""
    groups = q.shape[1] // k.shape[1]
    out = torch.zeros_like(q)
    for start, end in _segments(cu_seqlens):
        qs, ks, vs = (x[start:end].transpose(0, 1) for x in (q, k, v))
        if groups > 1:
            ks, vs = ks.repeat_interleave(groups, 0), vs.repeat_interleave(groups, 0)
        seg = torch.nn.functional.scaled_dot_product_attention(qs, ks, vs, is_causal=is_causal, scale=scale)
        out[start:end] = seg.transpose(0, 1)
    return out


def _reference_backward(
    grad: Tensor, q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor, is_causal: bool, scale: float | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Attention's backward written out per segment (autograd does not run inside a custom op)."""
    groups = q.shape[1] // k.shape[1]
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for start, end in _segments(cu_seqlens):
        qs, gs = q[start:end].transpose(0, 1), grad[start:end].transpose(0, 1)  # (H, n, D)
        ks, vs = (x[start:end].transpose(0, 1).repeat_interleave(groups, 0) for x in (k, v))
        scores = qs @ ks.transpose(1, 2) * scale
        if is_causal:
            scores = scores.masked_fill(torch.ones_like(scores, dtype=torch.bool).triu(1), float("-inf"))
        probs = scores.softmax(-1)
        d_probs = gs @ vs.transpose(1, 2)
        d_scores = probs * (d_probs - (d_probs * probs).sum(-1, keepdim=True)) * scale
        dq[start:end] = (d_scores @ ks).transpose(0, 1)
        d_k, d_v = d_scores.transpose(1, 2) @ qs, probs.transpose(1, 2) @ gs  # (H, n, D)
        n, dim = end - start, q.shape[-1]
        dk[start:end] = d_k.view(-1, groups, n, dim).sum(1).transpose(0, 1)
        dv[start:end] = d_v.view(-1, groups, n, dim).sum(1).transpose(0, 1)
    return dq, dk, dv


@torch.library.custom_op("assay::packed_flash_attention", mutates_args=())
def packed_flash_attention(
    q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor, max_seqlen: int,
    is_causal: bool, scale: MaybeFloat, window_left: int, window_right: int,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """(output, log-sum-exp) of attention within each segment; q (T, H, D), k/v (T, H_kv, D)."""
    if not q.is_cuda:
        if (window_left, window_right) not in ((-1, -1), (-1, 0)):
            raise NotImplementedError("sliding-window packed attention needs the CUDA kernel")
        out = _reference(q, k, v, cu_seqlens, is_causal, scale)
        return out, torch.zeros(q.shape[1], q.shape[0], dtype=torch.float32, device=q.device)
    out, lse, _, _, _ = torch.ops.aten._flash_attention_forward(
        q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, 0.0, is_causal, False,
        scale=scale, window_size_left=window_left, window_size_right=window_right,
    )  # fmt: skip
    return out, lse


@packed_flash_attention.register_fake
def _(q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor, max_seqlen: int, is_causal: bool,
      scale: MaybeFloat, window_left: int, window_right: int) -> tuple[Tensor, Tensor]:  # fmt: skip
    return torch.empty_like(q), q.new_empty((q.shape[1], q.shape[0]), dtype=torch.float32)


@torch.library.custom_op("assay::packed_flash_attention_backward", mutates_args=())
def packed_flash_attention_backward(
    grad: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, cu_seqlens: Tensor,
    max_seqlen: int, is_causal: bool, scale: MaybeFloat, window_left: int, window_right: int,
) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    if not q.is_cuda:
        return _reference_backward(grad, q, k, v, cu_seqlens, is_causal, scale)
    unused = torch.empty(0, device=q.device)
    dq, dk, dv = torch.ops.aten._flash_attention_backward(
        grad.contiguous(), q, k, v, out, lse, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, 0.0,
        is_causal, unused, unused, scale=scale, window_size_left=window_left, window_size_right=window_right,
    )  # fmt: skip
    return dq, dk, dv


@packed_flash_attention_backward.register_fake
def _(grad: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, cu_seqlens: Tensor,
      max_seqlen: int, is_causal: bool, scale: MaybeFloat, window_left: int,
      window_right: int) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
    q, k, v, cu_seqlens, max_seqlen, is_causal, scale, left, right = inputs
    ctx.save_for_backward(q, k, v, cu_seqlens, *output)
    ctx.options = (max_seqlen, is_causal, scale, left, right)


def _backward(ctx: Any, grad_out: Tensor, _grad_lse: Tensor) -> tuple[Any, ...]:
    q, k, v, cu_seqlens, out, lse = ctx.saved_tensors
    dq, dk, dv = packed_flash_attention_backward(grad_out, q, k, v, out, lse, cu_seqlens, *ctx.options)
    return dq, dk, dv, None, None, None, None, None, None


packed_flash_attention.register_autograd(_backward, setup_context=_setup_context)


def varlen_attention(
    q: Tensor, k: Tensor, v: Tensor, cu_seq_q: Tensor, cu_seq_k: Tensor, max_q: int, max_k: int,
    *, scale: float | None = None, window_size: tuple[int, int] = (-1, -1), enable_gqa: bool = False,
) -> Tensor:  # fmt: skip
    """torch 2.12's `varlen_attn` signature (self-attention over packed rows only)."""
    if cu_seq_k is not cu_seq_q and not torch.equal(cu_seq_q, cu_seq_k):
        raise ValueError("packed attention here is self-attention: query and key segments must match")
    if k.shape[1] != q.shape[1] and (not enable_gqa or q.shape[1] % k.shape[1]):
        raise ValueError(f"{q.shape[1]} query heads cannot attend over {k.shape[1]} key heads")
    is_causal = tuple(window_size) == (-1, 0)
    left, right = window_size
    out, _ = packed_flash_attention(q, k, v, cu_seq_q, max(max_q, max_k), is_causal, scale, left, right)
    return out


def install_unsloth_varlen() -> str:
    """Give Unsloth a varlen kernel where its own loader found none; returns the path in use."""
    if os.environ.get(ENV_SWITCH, "").lower() == "segments":
        return "segments (by request)"
    try:
        from unsloth.utils import attention_dispatch as dispatch
    except ImportError:
        return "no unsloth"
    current = getattr(dispatch, "_TORCH_VARLEN_ATTN", None)
    if current is varlen_attention:
        return "assay packed flash attention"
    if current is not None:
        return "torch varlen_attn"
    if not (torch.cuda.is_available() and torch.backends.cuda.is_flash_attention_available()):
        return "segments (no flash kernel)"
    dispatch._TORCH_VARLEN_ATTN = varlen_attention
    dispatch._LEAN_VARLEN = False  # its eager shortcut keys off torch>=2.12 internals
    return "assay packed flash attention"
