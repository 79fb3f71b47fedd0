"""Small helpers over the `messages` of an Example (a list of {role, content})."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from schemas.ids import content_id

ROLE_PATTERN = r"^(?:system,)?user,assistant(?:,user,assistant)*$"

Messages = Sequence[dict[str, Any]]


def roles(messages: Messages) -> str:
    """The roles in order, comma-joined: 'system,user,assistant'."""
    return ",".join(str(m.get("role") or "") for m in messages)


def empty_turns(messages: Messages) -> int:
    return sum(1 for m in messages if not str(m.get("content") or "").strip())


def user_text(messages: Messages) -> str:
    return "\n\n".join(str(m.get("content") or "") for m in messages if m.get("role") == "user")


def response_text(messages: Messages) -> str:
    """The last assistant message (the training target)."""
    for message in reversed(messages):
        if message.get("role") == "assistant":
            return str(message.get("content") or "")
    return ""


def system_text(messages: Messages) -> str | None:
    for message in messages:
        if message.get("role") == "system":
            return str(message.get("content") or "")
    return None


def chat_hash(messages: Messages) -> str:
    """Content hash of the conversation without its system prompt (same question + answer = same)."""
    turns = [(str(m.get("role")), " ".join(str(m.get("content") or "").split())) for m in messages
             if m.get("role") != "system"]
    return content_id("chat", turns)
