"""Secrets (API keys, tokens, private keys, connection strings) as a Presidio recognizer.

The patterns are detect-secrets' own plugins (its regex-based detectors: AWS, GitHub,
GitLab, Slack, Stripe, OpenAI, JWT, basic-auth URLs, private keys, ...), not hand-written.
detect-secrets works on lines and returns the secret value but no offset, so the
recognizer finds each value in the text and widens every hit to the whole thing that must
go: a private-key header becomes the whole `BEGIN ... END` block, the password of a
basic-auth URL the whole connection string, and any other key or token the whole token
around the match. Several plugins' patterns stop short of it: detect-secrets' JWT pattern
ends lazily after `header.payload.` (the signature would go out), Stripe's takes 24
characters of a longer key, Slack's only lower-case letters.

A second, pattern-based recognizer (`connection_string_recognizer`) reports URLs that carry
a credential in any form: a password (`scheme://user:pass@host`, also with an empty user or
reserved characters in the password), a token as the user (`https://ghp_...@github.com`), or
a credential query parameter (`?access_token=`, `&sig=`, `X-Amz-Signature=`, `api_key=`).
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from typing import Any, ClassVar

from curate.services.pii.presidio import EntityRecognizer, NlpArtifacts, RecognizerResult

# Plugins that are heuristics (entropy, keyword assignment: many false positives on prose)
# or duplicate a Presidio recognizer (public IPs).
EXCLUDED_BY_DEFAULT = frozenset(
    {"Base64HighEntropyString", "HexHighEntropyString", "KeywordDetector", "IPPublicDetector"}
)

ENTITY_OF_SECRET_TYPE = {"Private Key": "PRIVATE_KEY", "Basic Auth Credentials": "CONNECTION_STRING"}
DEFAULT_ENTITY = "API_KEY"
MIN_SECRET_CHARS = 6  # a shorter captured group is a prefix (ghp), not the secret

_URL_STOP = re.compile(r"[\s\"'<>()\[\]{}`]")
# A token: what a key can be made of (base64, base64url, JWT dots, hex, prefixes with - and _).
_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "-_+/=.~")
_TOKEN_START_CHARS = frozenset(string.ascii_letters + string.digits + "-_")  # not `=`, `/`: `key=AKIA...`
_TRAILING_PUNCT = ".,;:!?"
_KEY_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")


_URL_END = r"(?=[.,;:!?)\]}'\"]*(?:\s|$))"
CONNECTION_STRING_PATTERN = rf"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:[^\s]+@[^\s/?#@]+(?:[/?#][^\s]*?)?{_URL_END}"
# The user part is a token (16+ characters mixing digits, upper- and lower-case letters: two of
# the three, which `firstname.lastname` or `deploy-bot` do not), no password.
_MIXED = r"(?:(?=[^\s/@:]*\d)(?=[^\s/@:]*[a-zA-Z])|(?=[^\s/@:]*[A-Z])(?=[^\s/@:]*[a-z]))"
TOKEN_USER_PATTERN = (
    rf"\b[a-zA-Z][a-zA-Z0-9+.-]*://{_MIXED}[A-Za-z0-9_.~%-]{{16,}}@[^\s/?#@]+"
    rf"(?:[/?#][^\s]*?)?{_URL_END}"
)
CREDENTIAL_PARAMS = (
    "access_token", "id_token", "refresh_token", "auth_token", "token", "api_key", "apikey", "api-key", "key",
    "secret", "client_secret", "password", "passwd", "pwd", "pass", "sig", "signature", "x-amz-signature",
    "x-amz-credential", "x-amz-security-token", "x-goog-signature", "x-goog-credential", "auth", "authorization",
    "session", "sessionid", "sid",
)
CREDENTIAL_PARAM_PATTERN = (
    rf"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s]*?[?&#;](?i:{'|'.join(re.escape(p) for p in CREDENTIAL_PARAMS)})"
    rf"=[^\s&#\"'<>]{{4,}}?[^\s]*?{_URL_END}"
)


def connection_string_recognizer(supported_language: str = "en") -> Any:
    """URLs that carry a credential (`CONNECTION_STRING`, the whole URL): a password
    (`scheme://user:password@host/...`) whatever characters it uses, a token as the user, or
    a credential query parameter. detect-secrets' BasicAuthDetector is the first line for
    passwords, but its pattern stops at reserved characters (a password with `!` or `#`
    escapes it) and it knows neither of the other two forms."""
    from curate.services.pii.presidio import Pattern, PatternRecognizer

    return PatternRecognizer(
        supported_entity="CONNECTION_STRING",
        name="ConnectionStringRecognizer",
        patterns=[
            Pattern("uri_with_password", CONNECTION_STRING_PATTERN, 0.9),
            Pattern("uri_with_token_user", TOKEN_USER_PATTERN, 0.9),
            Pattern("url_with_credential_parameter", CREDENTIAL_PARAM_PATTERN, 0.9),
        ],
        supported_language=supported_language,
        global_regex_flags=re.DOTALL | re.MULTILINE,  # case matters to the token test; parameter names use (?i:)
    )


def available_plugins() -> dict[str, type[Any]]:
    """detect-secrets' plugin classes by class name."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    mapping: dict[str, type[Any]] = get_mapping_from_secret_type_to_class()
    return {cls.__name__: cls for cls in mapping.values()}


def default_plugin_names() -> list[str]:
    from detect_secrets.plugins.base import RegexBasedDetector

    return sorted(
        name
        for name, cls in available_plugins().items()
        if issubclass(cls, RegexBasedDetector) and name not in EXCLUDED_BY_DEFAULT
    )


class DetectSecretsRecognizer(EntityRecognizer):
    """Runs detect-secrets plugins over the text and reports API_KEY / PRIVATE_KEY / CONNECTION_STRING."""

    ENTITIES: ClassVar[tuple[str, ...]] = ("API_KEY", "PRIVATE_KEY", "CONNECTION_STRING")

    def __init__(self, plugin_names: Iterable[str] | None = None, supported_language: str = "en"):
        names = list(plugin_names) if plugin_names is not None else default_plugin_names()
        classes = available_plugins()
        unknown = [name for name in names if name not in classes]
        if unknown:
            raise ValueError(f"unknown detect-secrets plugins {unknown}; known: {sorted(classes)}")
        self.plugins = [classes[name]() for name in names]
        super().__init__(
            supported_entities=list(self.ENTITIES),
            name="DetectSecretsRecognizer",
            supported_language=supported_language,
        )

    def load(self) -> None:  # plugins are built in __init__
        return None

    @property
    def plugin_names(self) -> list[str]:
        return [type(plugin).__name__ for plugin in self.plugins]

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        results: dict[tuple[int, int, str], RecognizerResult] = {}
        for plugin in self.plugins:
            secret_type = plugin.secret_type
            entity = ENTITY_OF_SECRET_TYPE.get(secret_type, DEFAULT_ENTITY)
            if entities and entity not in entities:
                continue
            for raw_start, raw_end in _spans(plugin, text):
                start, end = _widen(text, raw_start, raw_end, entity)
                results[(start, end, entity)] = RecognizerResult(
                    entity_type=entity,
                    start=start,
                    end=end,
                    score=1.0,
                    recognition_metadata={
                        RecognizerResult.RECOGNIZER_NAME_KEY: "DetectSecretsRecognizer",
                        RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                        "secret_type": secret_type,
                    },
                )
        return list(results.values())


def _spans(plugin: Any, text: str) -> Iterable[tuple[int, int]]:
    """Where the plugin's patterns match: the captured secret when a pattern captures one
    (keyword assignments), else the whole match (a pattern such as GitHub's captures only
    its prefix, which detect-secrets' own `analyze_string` then returns as the "secret")."""
    patterns = getattr(plugin, "denylist", None)
    if patterns is None:  # not regex-based: find the returned values in the text
        for value in set(plugin.analyze_string(text)):
            if value:
                for match in re.finditer(re.escape(value), text):
                    yield match.start(), match.end()
        return
    for pattern in patterns:
        for match in pattern.finditer(text):
            groups = [i for i in range(1, (match.re.groups or 0) + 1) if match.group(i) and len(match.group(i)) >= MIN_SECRET_CHARS]
            if groups:
                yield match.span(groups[-1])
            else:
                yield match.span()


def _widen(text: str, start: int, end: int, entity: str) -> tuple[int, int]:
    if entity == "PRIVATE_KEY":
        line_start = text.rfind("\n", 0, start) + 1
        dashes = text.rfind("-----", line_start, start)
        start = dashes if dashes != -1 else line_start
        closing = _KEY_END.search(text, end)
        if closing is not None:
            return start, closing.end()
        blank = text.find("\n\n", end)  # no END marker: everything up to the next blank line
        return start, len(text) if blank == -1 else blank
    if entity == "CONNECTION_STRING":
        while start > 0 and not _URL_STOP.match(text[start - 1]):
            start -= 1
        stop = _URL_STOP.search(text, end)
        end = stop.start() if stop is not None else len(text)
        while end > start and text[end - 1] in _TRAILING_PUNCT:
            end -= 1
        return start, end
    return whole_token(text, start, end)


def whole_token(text: str, start: int, end: int) -> tuple[int, int]:
    """[start, end) grown to the whole token around it (a JWT's three segments, a key's
    suffix), less delimiters a pattern took in (`Artifactory`'s leading space) and a
    sentence's full stop."""
    while start < end and text[start] not in _TOKEN_CHARS:
        start += 1
    while end > start and text[end - 1] not in _TOKEN_CHARS:
        end -= 1
    while start > 0 and text[start - 1] in _TOKEN_START_CHARS:
        start -= 1
    while end < len(text) and text[end] in _TOKEN_CHARS:
        end += 1
    while end > start and text[end - 1] in ".":
        end -= 1
    return start, end
