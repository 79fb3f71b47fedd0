"""Presidio, imported once without transformers' pipelines: the PII service's one door to it.

Importing `presidio_analyzer` reaches `presidio_analyzer.nlp_engine.huggingface_token_pipe`,
whose `from transformers import pipeline` (guarded by `except ImportError`, for its
TransformersNlpEngine) loads transformers' modelling code and scikit-learn: about three
quarters of Presidio's import time (16 of 25 s on the shared 2-core machine), paid by every
process that redacts or re-scans. The detector never uses TransformersNlpEngine or
HuggingFaceNerRecognizer (the other module that binds `pipeline` at import): its recognizers
are named in `engine.py` and its NER is a spaCy pipeline. So transformers is hidden for the
length of that one import, and those two see what they see on an install without it. Nothing is hidden
when transformers is already loaded (nothing to save), and if a Presidio release ever needs
transformers at import, the import is simply repeated with it visible.

Everything in `curate.services.pii` imports Presidio's names from here, so no module can reach
Presidio before this guard runs.
"""

from __future__ import annotations

import sys
import threading

_lock = threading.Lock()


def _import_presidio() -> None:
    with _lock:
        if "presidio_analyzer" in sys.modules or "transformers" in sys.modules:
            return
        sys.modules["transformers"] = None  # type: ignore[assignment]  # `import transformers` raises ImportError
        try:
            import presidio_analyzer  # noqa: F401
        except ImportError:
            for name in [n for n in sys.modules if n.startswith("presidio_analyzer")]:
                del sys.modules[name]
        finally:
            if "transformers" in sys.modules and sys.modules["transformers"] is None:
                del sys.modules["transformers"]


_import_presidio()

from presidio_analyzer import (  # noqa: E402
    AnalyzerEngine,
    EntityRecognizer,
    Pattern,
    PatternRecognizer,
    RecognizerRegistry,
    RecognizerResult,
    predefined_recognizers,
)
from presidio_analyzer.nlp_engine import NerModelConfiguration, NlpArtifacts, SpacyNlpEngine  # noqa: E402
from presidio_analyzer.predefined_recognizers import EmailRecognizer  # noqa: E402
from presidio_anonymizer import AnonymizerEngine  # noqa: E402  (it imports presidio_analyzer too)
from presidio_anonymizer.entities import OperatorConfig  # noqa: E402
from presidio_anonymizer.entities import RecognizerResult as AnonymizerResult  # noqa: E402

__all__ = [
    "AnalyzerEngine", "AnonymizerEngine", "AnonymizerResult", "EmailRecognizer", "EntityRecognizer",
    "NerModelConfiguration", "NlpArtifacts", "OperatorConfig", "Pattern", "PatternRecognizer", "RecognizerRegistry",
    "RecognizerResult", "SpacyNlpEngine", "predefined_recognizers",
]
