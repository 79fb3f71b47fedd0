"""The detector: a Presidio analyzer with validated pattern recognizers, plausible-form phone
numbers, national ids for the configured locales, detect-secrets' plugins and URL
credentials, person names from name lists, and (only with a real spaCy NER model)
organisations and places.

Built once per worker process and cached (`get_engine`): building it loads spaCy and
compiles every recognizer, which costs far more than analysing a chunk.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.services.pii.config import NER_ENTITIES, SECRET_ENTITIES, RedactConfig
from curate.services.pii.names import person_name_recognizer
from curate.services.pii.phones import plausible_phone_recognizer
from curate.services.pii.presidio import (
    AnalyzerEngine,
    AnonymizerEngine,
    EmailRecognizer,
    EntityRecognizer,
    NerModelConfiguration,
    RecognizerRegistry,
    RecognizerResult,
    SpacyNlpEngine,
)
from curate.services.pii.presidio import predefined_recognizers as predefined
from curate.services.pii.secrets import DetectSecretsRecognizer, connection_string_recognizer

log = logging.getLogger(__name__)

# National-id recognizers per locale: identifiers of people (and tax/company ids that name
# one), each with Presidio's own checksum/format validation. Postcodes, licence plates and
# free-form licence numbers are left out: on prose they match far more than they should.
NATIONAL_IDS: dict[str, tuple[str, ...]] = {
    "us": ("UsSsnRecognizer", "UsItinRecognizer", "UsPassportRecognizer", "UsBankRecognizer"),
    "uk": ("NhsRecognizer", "UkNinoRecognizer", "UkPassportRecognizer"),
    "ca": ("CaSinRecognizer",),
    "au": ("AuTfnRecognizer", "AuMedicareRecognizer", "AuAbnRecognizer", "AuAcnRecognizer"),
    "in": ("InAadhaarRecognizer", "InPanRecognizer", "InPassportRecognizer", "InVoterRecognizer"),
    "es": ("EsNifRecognizer", "EsNieRecognizer", "EsPassportRecognizer"),
    "it": ("ItFiscalCodeRecognizer", "ItIdentityCardRecognizer", "ItPassportRecognizer"),
    "de": ("DeTaxIdRecognizer", "DeIdCardRecognizer", "DePassportRecognizer", "DeSocialSecurityRecognizer"),
    "pl": ("PlPeselRecognizer",),
    "sg": ("SgFinRecognizer",),
    "fi": ("FiPersonalIdentityCodeRecognizer",),
    "se": ("SePersonnummerRecognizer",),
    "kr": ("KrRrnRecognizer",),
    "tr": ("TrNationalIdRecognizer",),
    "za": ("ZaIdNumberRecognizer",),
    "ng": ("NgNinRecognizer",),
    "th": ("ThTninRecognizer",),
}

GENERIC = ("LenientEmailRecognizer", "PhoneRecognizer", "CreditCardRecognizer", "IbanRecognizer", "IpRecognizer", "UrlRecognizer")


class LenientEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recognizer, but an address whose domain is not under a public
    suffix (`soc@corp.local`, `ops@northwind.example`, an intranet's) is still reported, at
    the pattern's score instead of the validated 1.0: a client's internal addresses are
    personal data too, and Presidio's TLD check would drop them."""

    def __init__(self, supported_language: str = "en"):
        super().__init__(supported_language=supported_language, name="EmailRecognizer")

    def validate_result(self, pattern_text: str) -> bool | None:
        return True if super().validate_result(pattern_text) else None


def configure_tldextract_offline() -> None:
    """Make tldextract (used by the email recognizer) use its bundled suffix list: no download."""
    import tldextract.tldextract as tld

    tld.TLD_EXTRACTOR.suffix_list_urls = ()
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")


def blank_spacy_model(language: str) -> Path:
    """A blank spaCy pipeline (tokenizer only) saved to a folder Presidio can load by path."""
    import spacy

    target = Path(tempfile.gettempdir()) / f"assay-spacy-blank-{language}-{spacy.__version__}"
    if not (target / "config.cfg").exists():
        staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
        spacy.blank(language).to_disk(staging)
        try:
            staging.rename(target)
        except OSError:  # another worker saved it first
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
    return target


def has_ner(model_path: str) -> bool:
    import spacy

    return "ner" in spacy.load(model_path).pipe_names


@dataclass(frozen=True)
class ActiveRecognizer:
    name: str
    entities: tuple[str, ...]
    source: str  # presidio | detect-secrets | secrets-pattern | phone-form | name-lists | spacy-ner


class RedactEngine:
    """Analyzer (Presidio + detect-secrets) and anonymizer, configured from a RedactConfig."""

    def __init__(self, cfg: RedactConfig, ner_model: str | None = None):
        configure_tldextract_offline()
        logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
        self.cfg = cfg
        lang = cfg.language
        ner_on = bool(ner_model) and has_ner(str(ner_model))
        model_path = str(ner_model) if ner_on else str(blank_spacy_model(lang))
        nlp_engine = SpacyNlpEngine(
            models=[{"lang_code": lang, "model_name": model_path}],
            ner_model_configuration=NerModelConfiguration(labels_to_ignore=["DATE", "TIME", "CARDINAL", "ORDINAL", "QUANTITY", "MONEY", "PERCENT"]),
        )
        nlp_engine.load()
        registry = RecognizerRegistry(supported_languages=[lang])
        recognizers: list[EntityRecognizer] = []
        for name in GENERIC:
            cls: Any = LenientEmailRecognizer if name == "LenientEmailRecognizer" else getattr(predefined, name)
            if name == "PhoneRecognizer":
                recognizers.append(cls(supported_language=lang, supported_regions=list(cfg.phone_regions)))
                recognizers.append(plausible_phone_recognizer(list(cfg.phone_regions), lang))
            else:
                recognizers.append(cls(supported_language=lang))
        for locale in cfg.locales:
            names = NATIONAL_IDS.get(locale.lower())
            if names is None:
                raise ValueError(f"redact.locales: unknown locale {locale!r}; known: {sorted(NATIONAL_IDS)}")
            recognizers.extend(getattr(predefined, name)(supported_language=lang) for name in names)
        if cfg.secrets:
            recognizers.append(DetectSecretsRecognizer(cfg.secret_plugins, supported_language=lang))
            recognizers.append(connection_string_recognizer(lang))
        if cfg.person_names:
            recognizers.append(person_name_recognizer(lang))
        if ner_on:
            recognizers.append(predefined.SpacyRecognizer(supported_language=lang, supported_entities=list(NER_ENTITIES)))
        for recognizer in recognizers:
            registry.add_recognizer(recognizer)
        self.analyzer = AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=[lang])
        self.anonymizer = AnonymizerEngine()
        self.ner_active = ner_on
        supported = {e for r in recognizers for e in r.supported_entities}
        self.supported = sorted(supported)
        wanted = set(cfg.entities) if cfg.entities is not None else supported
        self.entities = sorted(wanted & supported)
        missing = sorted(wanted - supported)
        if missing:
            log.warning("redact: no active recognizer for %s", missing)
        self.active = [
            ActiveRecognizer(
                name=_name(r) if not isinstance(r, DetectSecretsRecognizer) else f"DetectSecretsRecognizer({', '.join(r.plugin_names)})",
                entities=tuple(sorted(set(r.supported_entities) & set(self.entities))),
                source="detect-secrets" if isinstance(r, DetectSecretsRecognizer) else SOURCES.get(_name(r), "presidio"),
            )
            for r in recognizers
            if set(r.supported_entities) & set(self.entities)
        ]
        self.allow = frozenset(cfg.allow_list)

    def detectors_for(self, entity: str) -> list[ActiveRecognizer]:
        """The active recognizers that report `entity` (empty: nothing looks for it)."""
        return [a for a in self.active if entity in a.entities]

    def detect(self, text: str) -> list[RecognizerResult]:
        """Non-overlapping findings, in text order (longest span wins, then highest score)."""
        if not text.strip() or not self.entities:
            return []
        found = self.analyzer.analyze(
            text=text,
            language=self.cfg.language,
            entities=self.entities,
            score_threshold=self.cfg.score_threshold,
        )
        if self.allow:  # an allowed value, and whatever is found inside it, stays
            allowed = [(r.start, r.end) for r in found if text[r.start : r.end] in self.allow]
            found = [r for r in found if not any(s <= r.start and r.end <= e for s, e in allowed)]
        return resolve_overlaps(found)


SOURCES = {
    "ConnectionStringRecognizer": "secrets-pattern",
    "PlausiblePhoneRecognizer": "phone-form",
    "NameListRecognizer": "name-lists",
    "SpacyRecognizer": "spacy-ner",
}


def _name(recognizer: Any) -> str:
    return str(recognizer.name)


def resolve_overlaps(results: list[RecognizerResult]) -> list[RecognizerResult]:
    """Keep a set of non-overlapping results: secrets first, then longer spans, then higher scores.

    An e-mail address also matches as a URL (its domain), a connection string contains a
    URL: the enclosing, longer finding is the one to redact. A secret comes before any
    other type, whatever its length: a token inside a longer URL must not go out with the
    URL when URLs are kept (`policies: {URL: keep}`).
    """
    chosen: list[RecognizerResult] = []
    order = sorted(results, key=lambda r: (r.entity_type not in SECRET_ENTITIES, -(r.end - r.start), -r.score, r.start, r.entity_type))
    for result in order:
        if result.end <= result.start:
            continue
        if all(result.end <= c.start or result.start >= c.end for c in chosen):
            chosen.append(result)
    return sorted(chosen, key=lambda r: (r.start, r.end))


def recognizer_name(result: RecognizerResult) -> str:
    meta: dict[str, Any] = result.recognition_metadata or {}
    return str(meta.get(RecognizerResult.RECOGNIZER_NAME_KEY, ""))


def secret_type(result: RecognizerResult) -> str:
    meta: dict[str, Any] = result.recognition_metadata or {}
    return str(meta.get("secret_type", ""))


# Fields that change what is detected; policies and the rest only change what is done with it.
DETECTION_FIELDS = (
    "language", "locales", "phone_regions", "entities", "score_threshold", "allow_list",
    "secrets", "secret_plugins", "person_names", "ner_model",
)


@functools.lru_cache(maxsize=8)
def _cached_engine(detection_json: str, ner_model: str | None) -> RedactEngine:
    return RedactEngine(RedactConfig.model_validate(json.loads(detection_json)), ner_model)


def get_engine(cfg: RedactConfig, ner_model: str | None = None) -> RedactEngine:
    """The detector for this config, built once per process (policies do not matter to it:
    pass the config to `redact_text`)."""
    detection = cfg.model_dump(mode="json", include=set(DETECTION_FIELDS))
    return _cached_engine(json.dumps(detection, sort_keys=True), ner_model)
