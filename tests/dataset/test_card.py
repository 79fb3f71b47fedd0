"""The dataset card's config section: secrets masked by what they are, settings left alone;
its plots count whole examples."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from curate.config import load_config
from curate.dataset.card import MASK, mask_secrets
from curate.dataset.plots import plot_distributions

DEMO = Path(__file__).resolve().parents[2] / "data" / "demo" / "pipeline.yaml"


def test_ordinary_settings_named_like_tokens_are_shown() -> None:
    config = load_config(DEMO).model_dump(mode="json", by_alias=True)
    masked = mask_secrets(config)
    assert masked == config  # the demo config holds no secret
    assert masked["chunk"]["max_tokens"] == 256 and masked["chunk"]["overlap_tokens"] == 0
    assert masked["chunk"]["min_tokens"] == 64 and masked["chunk"]["tokenizer"] == config["chunk"]["tokenizer"]
    assert masked["teacher"]["max_tokens"] == 512 and masked["teacher"]["expected_output_tokens"] == 80
    assert masked["review"]["token_env"] == "LABEL_STUDIO_API_KEY"  # the variable's name, not its value
    assert masked["redact"]["policies"]["PRIVATE_KEY"] == "fail"  # an entity type, not a key


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"api_key": "abc123"}, {"api_key": MASK}),
        ({"teacher": {"auth_token": "abc", "max_tokens": 9}}, {"teacher": {"auth_token": MASK, "max_tokens": 9}}),
        ({"db": {"password": "hunter2", "passwordless": True}}, {"db": {"password": MASK, "passwordless": True}}),
        ({"base_url": "https://user:s3cret-pw@llm.internal/v1"}, {"base_url": f"https://user:{MASK}@llm.internal/v1"}),
        ({"note": "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"}, {"note": MASK}),  # a GitHub token by its format
        ({"extra": ["AKIA" + "IOSFODNN7EXAMPLE", "plain"]}, {"extra": [MASK, "plain"]}),  # an AWS key id
        ({"api_key": None, "secret": ""}, {"api_key": None, "secret": ""}),  # nothing to hide
    ],
)
def test_secrets_are_masked_by_what_they_are(config: dict, expected: dict) -> None:
    assert mask_secrets(config) == expected


def test_the_count_axes_have_whole_numbers(tmp_path: Path) -> None:
    """Three examples: matplotlib's default locator would tick 0.5, 1.5, 2.5 on the count axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    messages = [[{"role": "user", "content": "q" * n}, {"role": "assistant", "content": "a" * n}] for n in (50, 60, 70)]
    rows = pl.DataFrame({"split": ["train", "train", "test"], "label": ["x", "y", "x"],
                         "task_type": ["classification"] * 3, "messages": messages})
    figures: list = []
    original = plt.Figure.savefig

    def keep(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        figures.append(self)
        return original(self, *args, **kwargs)

    plt.Figure.savefig = keep  # type: ignore[method-assign]
    try:
        plot_distributions(rows, tmp_path)
    finally:
        plt.Figure.savefig = original  # type: ignore[method-assign]
    axes = [ax for figure in figures for ax in figure.axes if ax.get_ylabel() == "examples"]
    assert len(axes) == 3
    for ax in axes:
        ticks = [t for t in ax.get_yticks() if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_the_card_counts_contamination_per_eval_set() -> None:
    from curate.dataset.card import card_sources, render_card

    messages = [[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]] * 2
    rows = pl.DataFrame({"split": ["train", "test"], "label": ["x", "y"], "task_type": ["classification"] * 2,
                         "messages": messages})
    contamination = {"methods": ["13-gram overlap", "MinHash sentence near-match (Jaccard >= 0.5)"], "sets": {
        "held-out": {"items": 40, "items_too_short": 2, "examples_matched": 3, "items_matched": 2,
                     "by_ngram": 2, "by_minhash": 1, "by_embedding": 0}}}
    manifest = {"stages": {"dedup": {"status": "complete", "report": {"contamination": contamination}}}}
    card = render_card(rows, manifest=manifest, config={}, files=[], plots={}, name="t")
    assert "## Contamination" in card
    assert "| held-out | 40 | 2 | 3 | 2 | 2 | 1 | 0 |" in card
    assert "by 13-gram overlap; MinHash sentence near-match (Jaccard >= 0.5)." in card
    assert card_sources(manifest)["contamination"] == contamination  # a changed count re-renders the card
    bare = render_card(rows, manifest={"stages": {}}, config={}, files=[], plots={}, name="t")
    assert "not checked against any benchmark" in bare
