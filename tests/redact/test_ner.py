"""The NER path (names of people and places), with a stand-in spaCy model.

No real NER model can be installed here. `memorised_ner_stand_in` is NOT a real model: a
blank spaCy pipeline whose `ner` component is trained in the fixture on three sentences
until it has memorised them, only to exercise the `redact.ner_model` code path (loading a
model folder relative to the config, Presidio's SpacyRecognizer, the report).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from curate.redact.stages import redact_chunks, summarize
from curate.run.stage import StageContext
from tests.redact.conftest import chunk_frame, pipeline_config

SENTENCES = [
    ("Escalate to Dana Whitfield in London today.", [(12, 26, "PERSON"), (30, 36, "GPE")]),
    ("Dana Whitfield approved the change.", [(0, 14, "PERSON")]),
    ("The office in London closed.", [(14, 20, "GPE")]),
]


@pytest.fixture(scope="module")
def memorised_ner_stand_in(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A spaCy pipeline that has memorised SENTENCES (a stand-in, not an NER model)."""
    import spacy
    from spacy.training import Example

    nlp = spacy.blank("en")
    ner: Any = nlp.add_pipe("ner")
    for _, entities in SENTENCES:
        for *_, label in entities:
            ner.add_label(label)
    examples = [Example.from_dict(nlp.make_doc(text), {"entities": ents}) for text, ents in SENTENCES]
    random.seed(0)
    spacy.util.fix_random_seed(0)
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(40):
        random.shuffle(examples)
        nlp.update(examples, sgd=optimizer, drop=0.0)
    folder = tmp_path_factory.mktemp("config") / "models" / "memorised-ner"
    folder.parent.mkdir(parents=True)
    nlp.to_disk(folder)
    return folder


def test_names_are_replaced_when_an_ner_model_is_configured(memorised_ner_stand_in: Path) -> None:
    base = memorised_ner_stand_in.parents[1]  # the config's folder: ner_model is relative to it
    # name lists off: only the model's findings, so that they are the ones checked below
    cfg = pipeline_config(base, ner_model="models/memorised-ner", person_names=False)
    ctx = StageContext(config=cfg, run_dir=str(base / "run"), stage="redact", show_progress=False)
    chunks = chunk_frame({"d": ["Escalate to Dana Whitfield in London today. ", "Dana Whitfield approved the change."]})
    out = redact_chunks(chunks, ctx)
    texts = out["chunks"].sort("start")["text"].to_list()
    assert texts == ["Escalate to <PERSON_1> in <LOCATION_1> today. ", "<PERSON_1> approved the change."]
    report = summarize({name: frame.lazy() for name, frame in out.items()})
    assert report["summary"]["ner"] == "active"
    assert any(r["source"] == "spacy-ner" and "PERSON" in r["entities"] for r in report["active_recognizers"])
    assert set(out["findings"].filter(pl.col("recognizer") == "SpacyRecognizer")["entity_type"]) == {"PERSON", "LOCATION"}
