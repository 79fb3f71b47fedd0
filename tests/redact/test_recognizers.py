"""Each recognizer on values it must find and look-alikes it must not (Presidio + detect-secrets)."""

from __future__ import annotations

import itertools

import pytest

from curate.services.pii.engine import RedactEngine

PRIVATE_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAvRk2q5Xn3Jz8pQk1cW9fLr0sT7a2bHq3kLp9wVd8yX1zQe4r\n"
    "T5uY6iO7pA8sD9fG0hJ1kL2zX3cV4bN5mQ6wE7rT8yU9iO0pA1sD2fG3hJ4kL5z\n"
    "-----END RSA PRIVATE KEY-----"
)

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwicm9sZSI6ImFkbWluIn0"
    ".868Y_kVZSflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)

FOUND = [
    ("EMAIL_ADDRESS", "Write to jane.roe@example.com today.", "jane.roe@example.com"),
    ("EMAIL_ADDRESS", "Internal: soc@northwind-freight.example, any hour.", "soc@northwind-freight.example"),
    ("PHONE_NUMBER", "Call +1 212-555-0147 now.", "+1 212-555-0147"),
    ("PHONE_NUMBER", "Hotline +44 20 7946 0958 for help.", "+44 20 7946 0958"),
    ("CREDIT_CARD", "Card 4111 1111 1111 1111 on file.", "4111 1111 1111 1111"),
    ("CREDIT_CARD", "Card 5555555555554444 on file.", "5555555555554444"),
    ("CREDIT_CARD", "Amex 378282246310005 on file.", "378282246310005"),
    ("IBAN_CODE", "Pay to GB82 WEST 1234 5698 7654 32 please.", "GB82 WEST 1234 5698 7654 32"),
    ("IBAN_CODE", "Pay to DE89370400440532013000 please.", "DE89370400440532013000"),
    ("IP_ADDRESS", "The server 192.168.10.20 answered.", "192.168.10.20"),
    ("IP_ADDRESS", "The server 2001:db8:85a3::8a2e:370:7334 answered.", "2001:db8:85a3::8a2e:370:7334"),
    ("URL", "Docs at https://intranet.example.com/wiki/page for staff.", "https://intranet.example.com/wiki/page"),
    ("API_KEY", "aws key AKIAIOSFODNN7EXAMPLE in config", "AKIAIOSFODNN7EXAMPLE"),
    ("API_KEY", "token ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789 leaked", "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"),
    ("API_KEY", "slack xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx here",
     "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"),
    ("API_KEY", "stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc here", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    ("CONNECTION_STRING", "DSN postgres://admin:s3cretPass@db.internal.example.com:5432/prod.",
     "postgres://admin:s3cretPass@db.internal.example.com:5432/prod"),
    ("PRIVATE_KEY", f"key:\n{PRIVATE_KEY}\nend of file", PRIVATE_KEY),
    # a password with reserved characters escapes detect-secrets' BasicAuthDetector: the pattern backs it up
    ("CONNECTION_STRING", "loader uses postgres://svc:Wint3r!2024@pg.internal.example.com:5432/billing daily",
     "postgres://svc:Wint3r!2024@pg.internal.example.com:5432/billing"),
    ("CONNECTION_STRING", "uri mongodb+srv://app:p%40ss#1@cluster0.example.net/db?retryWrites=true)",
     "mongodb+srv://app:p%40ss#1@cluster0.example.net/db?retryWrites=true"),
    ("US_SSN", "Employee SSN 536-22-8726 on the form.", "536-22-8726"),
    # whole tokens: the JWT's signature, a key longer than its plugin's pattern, Slack's upper case
    ("API_KEY", f"Authorization: Bearer {JWT}.", JWT),
    ("API_KEY", "stripe sk_live_4eC39HqLyjWDarjtT1zdp7dcQ9xR2mLk8vBn here", "sk_live_4eC39HqLyjWDarjtT1zdp7dcQ9xR2mLk8vBn"),
    # URL credentials: a token as the user, an empty user, a credential query parameter
    ("CONNECTION_STRING", "git clone https://ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789@github.com/acme/infra.git now",
     "https://ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789@github.com/acme/infra.git"),
    ("CONNECTION_STRING", "pull https://glpat-JGVa_okFGaemiEo-sbBH@gitlab.example.com/ops/infra.git daily",
     "https://glpat-JGVa_okFGaemiEo-sbBH@gitlab.example.com/ops/infra.git"),
    ("CONNECTION_STRING", "cache https://:Tr0ub4dor3@cache.internal.example.com/0 here",
     "https://:Tr0ub4dor3@cache.internal.example.com/0"),
    ("CONNECTION_STRING", "report https://files.example.com/q3.pdf?X-Amz-Credential=AKIAX%2F2024&X-Amz-Signature=9f86d081884c7d65 expires",
     "https://files.example.com/q3.pdf?X-Amz-Credential=AKIAX%2F2024&X-Amz-Signature=9f86d081884c7d65"),
    ("CONNECTION_STRING", "hook https://api.example.com/v1/events?api_key=Zx81kQ0pLm2vB7nR.",
     "https://api.example.com/v1/events?api_key=Zx81kQ0pLm2vB7nR"),
    # plausible in form, rejected by phonenumbers as unassigned: drama and test ranges
    ("PHONE_NUMBER", "Call +44 7700 900123 out of hours.", "+44 7700 900123"),
    ("PHONE_NUMBER", "Call 07700 900461 out of hours.", "07700 900461"),
    ("PHONE_NUMBER", "Sheffield desk 0114 496 0321 or 01632 960587.", "01632 960587"),
    ("PHONE_NUMBER", "The help desk is (555) 555-0134, ext. 2.", "(555) 555-0134, ext. 2"),  # extension included
    ("PHONE_NUMBER", "Dial 555-0182 from any desk phone.", "555-0182"),
    ("PHONE_NUMBER", "Mobile 0491 570 156 (AU).", "0491 570 156"),
    # names from the name lists and rules
    ("PERSON", "The change was approved by Dana Whitfield on Monday.", "Dana Whitfield"),
]

NOT_FOUND = [
    ("CREDIT_CARD", "Card 4111 1111 1111 1112 fails its Luhn checksum."),
    ("CREDIT_CARD", "Card 5555555555554445 fails its Luhn checksum."),
    ("IBAN_CODE", "Pay to GB82 WEST 1234 5698 7654 33 (bad check digits)."),
    ("IBAN_CODE", "Pay to DE89370400440532013001 (bad check digits)."),
    ("IP_ADDRESS", "Version 1.2.3 of the tool, section 3.4.5."),
    ("EMAIL_ADDRESS", "Write to jane.roe at example dot com."),
    ("API_KEY", "aws key AKIA-SHORT and github ghp_tooShort and slack xoxb- nothing"),
    ("CONNECTION_STRING", "DSN postgres://db.internal.example.com:5432/prod has no password."),
    ("PRIVATE_KEY", "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----"),
    ("CONNECTION_STRING", "clone ssh://git@github.com/acme/infra.git and https://example.com/search?q=token"),
    ("CONNECTION_STRING", "push as https://deploy-bot-production@git.example.com/acme/infra.git (a user name)"),
    ("PHONE_NUMBER", "See SP 800-53 Rev. 4 (2013-04-30), AC-2 (3), section 1.2.3.4, within 90 days."),
    ("PHONE_NUMBER", "Card 4111 1111 1111 1112 and IBAN GB82 WEST 1234 5698 7654 33 are broken."),
    ("PERSON", "The General Counsel reviewed the Key Establishment plan and the File Transfer Protocol."),
]


@pytest.mark.parametrize(("entity", "text", "value"), FOUND, ids=[f"{e}-{i}" for i, (e, _, _) in enumerate(FOUND)])
def test_finds_value(engine: RedactEngine, entity: str, text: str, value: str) -> None:
    spans = [(r.entity_type, text[r.start : r.end]) for r in engine.detect(text)]
    assert (entity, value) in spans, spans


@pytest.mark.parametrize(("entity", "text"), NOT_FOUND, ids=[f"{e}-{i}" for i, (e, _) in enumerate(NOT_FOUND)])
def test_ignores_lookalike(engine: RedactEngine, entity: str, text: str) -> None:
    assert entity not in {r.entity_type for r in engine.detect(text)}


def test_policy_prose_without_personal_data_has_no_findings(engine: RedactEngine) -> None:
    text = (
        "AC-2 Account Management. The organization monitors the use of information system accounts "
        "and reviews accounts for compliance with account management requirements at least every 90 days "
        "(NIST SP 800-53 Rev. 4, 2013)."
    )
    assert engine.detect(text) == []


def test_findings_do_not_overlap_and_email_wins_over_its_domain(engine: RedactEngine) -> None:
    text = "mail jane.roe@example.com and see https://example.com/x"
    found = engine.detect(text)
    assert [(r.entity_type, text[r.start : r.end]) for r in found] == [
        ("EMAIL_ADDRESS", "jane.roe@example.com"),
        ("URL", "https://example.com/x"),
    ]
    assert all(a.end <= b.start for a, b in itertools.pairwise(found))


def test_active_recognizers_are_listed_and_ner_is_off_without_a_model(engine: RedactEngine) -> None:
    names = {a.name.split("(")[0] for a in engine.active}
    assert {"EmailRecognizer", "PhoneRecognizer", "PlausiblePhoneRecognizer", "CreditCardRecognizer", "IbanRecognizer",
            "IpRecognizer", "UrlRecognizer", "DetectSecretsRecognizer", "UsSsnRecognizer", "UkNinoRecognizer",
            "NameListRecognizer"} <= names
    assert not engine.ner_active
    assert "PERSON" in engine.entities and "ORGANIZATION" not in engine.entities
    assert [a.source for a in engine.detectors_for("PERSON")] == ["name-lists"]


def test_a_secret_inside_a_kept_url_is_still_replaced() -> None:
    """URLs kept by policy: a JWT in one (under a parameter name no pattern knows) is a secret
    and wins the overlap, so only it is replaced and the rest of the URL stays."""
    from curate.services.pii.config import RedactConfig
    from curate.services.pii.engine import get_engine
    from curate.services.pii.redactor import PlaceholderBook, redact_text

    cfg = RedactConfig(enabled=True, policies={"URL": "keep"})
    text = f"Callback https://app.example.com/cb#state=x&jwt={JWT} for login."
    out = redact_text(get_engine(cfg), text, PlaceholderBook(), cfg=cfg)
    assert out.text == "Callback https://app.example.com/cb#state=x&jwt=<API_KEY_1> for login."


def test_whole_token_stops_at_delimiters_and_a_full_stop() -> None:
    from curate.services.pii.secrets import whole_token

    text = 'key="AKIAIOSFODNN7EXAMPLE", then eyJa.eyJb.sig-_x. Next'
    start = text.index("AKIA")
    assert text[slice(*whole_token(text, start, start + 8))] == "AKIAIOSFODNN7EXAMPLE"
    start = text.index("eyJa")
    assert text[slice(*whole_token(text, start, start + 10))] == "eyJa.eyJb.sig-_x"


def test_allow_list_keeps_public_values() -> None:
    from curate.services.pii.config import RedactConfig
    from curate.services.pii.engine import get_engine

    allowed = get_engine(RedactConfig(enabled=True, allow_list=["security@nist.gov"]))
    text = "Contact security@nist.gov or jane.roe@example.com"
    assert [text[r.start : r.end] for r in allowed.detect(text)] == ["jane.roe@example.com"]


def test_unknown_locale_is_a_config_error() -> None:
    from curate.services.pii.config import RedactConfig
    from curate.services.pii.engine import RedactEngine

    with pytest.raises(ValueError, match="unknown locale 'xx'"):
        RedactEngine(RedactConfig(enabled=True, locales=["xx"]))
