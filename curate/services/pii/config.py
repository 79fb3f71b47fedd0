"""Configuration of redaction before the teacher (issue 11).

Every entity type found in a chunk gets a policy: `replace` (a placeholder such as
`<EMAIL_ADDRESS_1>`, the same for the same value throughout a document), `mask` (the
value's characters replaced by `mask_char`), `keep` (left as is, still counted) or `fail`
(the run stops, naming the chunk and the entity type).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

Policy = Literal["replace", "mask", "keep", "fail"]

# Pattern entities with validation (checksums, TLDs, phone number metadata).
PATTERN_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "URL")
# Secrets found by detect-secrets' plugins (see curate.services.pii.secrets).
SECRET_ENTITIES = ("API_KEY", "PRIVATE_KEY", "CONNECTION_STRING")
# Names: PERSON by the offline name-list recognizer (`person_names`, curate.services.pii.names);
# all three by a spaCy NER model when one is configured (`ner_model`).
NER_ENTITIES = ("PERSON", "ORGANIZATION", "LOCATION")


class RedactConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = Field(False, description="Redact personal data and secrets before generation")
    language: str = Field("en", description="Language code given to Presidio's analyzer")
    locales: list[str] = Field(
        default_factory=lambda: ["us", "uk"],
        description="Countries whose national-id recognizers run (us, uk, ca, au, in, es, it, "
        "de, pl, sg, fi, se, kr, tr, za, ng, th)",
    )
    phone_regions: list[str] = Field(
        default_factory=lambda: ["US", "GB", "DE", "FR", "IN", "CA", "AU"],
        description="Regions (ISO 3166 alpha-2) whose phone number formats are recognised",
    )
    entities: list[str] | None = Field(
        None,
        description="Entity types to look for; default: every pattern, national-id and secret type, "
        "PERSON (name lists), and ORGANIZATION/LOCATION too when ner_model is set. `curate audit --strict` "
        "fails when a type named here (default: all of these and ORGANIZATION/LOCATION) has no detector",
    )
    default_policy: Policy = Field("replace", description="Policy for entity types not named in `policies`")
    policies: dict[str, Policy] = Field(
        default_factory=dict,
        description="Policy per entity type, e.g. {URL: keep, CREDIT_CARD: fail}",
    )
    mask_char: str = Field("*", min_length=1, max_length=1, description="Character of the `mask` policy")
    score_threshold: float = Field(0.4, ge=0.0, le=1.0, description="Lowest Presidio score that counts as a finding")
    allow_list: list[str] = Field(
        default_factory=list, description="Exact values never redacted (public addresses, sample numbers)"
    )
    secrets: bool = Field(True, description="Detect API keys, tokens, private keys, connection strings (detect-secrets)")
    secret_plugins: list[str] | None = Field(
        None,
        description="detect-secrets plugin class names to run (default: every regex-based detector, "
        "no entropy or keyword heuristics)",
    )
    person_names: bool = Field(
        True,
        description="Detect PERSON with the offline name-list recognizer (a first-name list plus "
        "capitalisation and context rules; a floor that ner_model raises)",
    )
    ner_model: str | None = Field(
        None,
        description="Folder (relative to the config) or installed name of a spaCy pipeline with an "
        "`ner` component; without one, ORGANIZATION/LOCATION are NOT detected and PERSON only by name lists",
    )
    restore_in_final: bool = Field(
        False, description="Put the original values back into the final dataset (default: keep placeholders)"
    )
    max_residual: int | None = Field(
        0,
        ge=0,
        description="Most findings a re-scan of the final dataset may count (entity types not kept) "
        "before the run fails; null: count but never fail",
    )

    def policy_for(self, entity: str) -> Policy:
        return self.policies.get(entity, self.default_policy)


def resolve_ner_model(name: str | None, base_dir: str | Path) -> str | None:
    """The configured spaCy NER model: a folder (relative to the config's folder), or the
    name of an installed model when no such folder exists."""
    if not name:
        return None
    candidate = Path(name).expanduser()
    if not candidate.is_absolute():
        candidate = (Path(base_dir) / candidate).resolve()
    return str(candidate) if candidate.exists() else name


class PiiSettings(Protocol):
    """What the PII library reads of a pipeline config: the redact section and the config's folder."""

    @property
    def redact(self) -> RedactConfig: ...

    @property
    def base_dir(self) -> str: ...
