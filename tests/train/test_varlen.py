"""The packed-attention op handed to Unsloth on torch < 2.12: same numbers as masked attention.

On CPU the op runs its per-segment path; these tests hold its contract (shapes, grouped-query
heads, gradients, the fake kernels torch.compile traces with). The CUDA kernel itself is
checked against the same reference on the GPU by bench/train (`--phases varlen-check`).
"""

from __future__ import annotations

import pytest
import torch

from train.varlen import install_unsloth_varlen, packed_flash_attention, varlen_attention

LENGTHS = [5, 1, 9, 3]


def packed(heads: int, kv_heads: int, dim: int = 8, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    total = sum(LENGTHS)
    q = torch.randn(total, heads, dim, generator=g, dtype=torch.float64)
    k = torch.randn(total, kv_heads, dim, generator=g, dtype=torch.float64)
    v = torch.randn(total, kv_heads, dim, generator=g, dtype=torch.float64)
    cu = torch.tensor([0, *torch.tensor(LENGTHS).cumsum(0).tolist()], dtype=torch.int32)
    return q, k, v, cu


def block_causal_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """One dense attention over the whole packed row with a block-diagonal causal mask."""
    doc = torch.repeat_interleave(torch.arange(len(LENGTHS)), torch.tensor(LENGTHS))
    pos = torch.arange(doc.numel())
    allowed = (doc[:, None] == doc[None, :]) & (pos[None, :] <= pos[:, None])
    groups = q.shape[1] // k.shape[1]
    kk, vv = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    out = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(0, 1), kk.transpose(0, 1), vv.transpose(0, 1), attn_mask=allowed
    )
    return out.transpose(0, 1)


@pytest.mark.parametrize(("heads", "kv_heads"), [(4, 4), (4, 2), (6, 1)])
def test_matches_block_diagonal_causal_attention_with_grouped_heads(heads: int, kv_heads: int) -> None:
    q, k, v, cu = packed(heads, kv_heads)
    out = varlen_attention(q, k, v, cu, cu, max(LENGTHS), max(LENGTHS), window_size=(-1, 0), enable_gqa=True)
    assert out.shape == q.shape
    torch.testing.assert_close(out, block_causal_reference(q, k, v))


def test_gradients_match_the_masked_reference() -> None:
    leaves = [x.requires_grad_(True) for x in packed(4, 2)[:3]]
    cu = packed(4, 2)[3]
    weights = torch.randn(sum(LENGTHS), 4, 8, dtype=torch.float64)
    ours = torch.autograd.grad(
        (varlen_attention(*leaves, cu, cu, 9, 9, window_size=(-1, 0), enable_gqa=True) * weights).sum(),
        leaves,
    )
    reference = torch.autograd.grad((block_causal_reference(*leaves) * weights).sum(), leaves)
    for got, want in zip(ours, reference, strict=True):
        torch.testing.assert_close(got, want)


def test_the_op_is_registered_soundly_for_tracing() -> None:
    """Schema, fake kernel and autograd registration as torch.library checks them."""
    q, k, v, cu = packed(4, 2)
    args = (q.requires_grad_(True), k.requires_grad_(True), v.requires_grad_(True), cu, 9, True, None, -1, 0)
    torch.library.opcheck(
        packed_flash_attention,
        args,
        test_utils=("test_schema", "test_faketensor", "test_autograd_registration"),
    )


def test_traces_whole_under_torch_compile_like_unsloths_compiled_blocks() -> None:
    q, k, v, cu = packed(4, 2)

    def block(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return varlen_attention(q * 2, k, v, cu, cu, 9, 9, window_size=(-1, 0), enable_gqa=True).sum(-1)

    compiled = torch.compile(block, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(q, k, v), block(q, k, v))


def test_refuses_heads_that_do_not_group_and_cross_attention() -> None:
    q, k, v, cu = packed(4, 3)
    with pytest.raises(ValueError, match="4 query heads cannot attend over 3"):
        varlen_attention(q, k, v, cu, cu, 9, 9, window_size=(-1, 0), enable_gqa=True)
    q, k, v, cu = packed(4, 4)
    with pytest.raises(ValueError, match="self-attention"):
        varlen_attention(q, k, v, cu, torch.tensor([0, 18], dtype=torch.int32), 9, 18, window_size=(-1, 0))


def test_without_unsloth_nothing_is_patched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSAY_PACKED_ATTENTION", "segments")
    assert install_unsloth_varlen() == "segments (by request)"
    monkeypatch.delenv("ASSAY_PACKED_ATTENTION")
    assert install_unsloth_varlen() in {"no unsloth", "segments (no flash kernel)"}
