"""The live back-ends: what differs between Anthropic and OpenAI-compatible servers.

Each adapter builds the SDK client and the request arguments, reads usage and the answer's
JSON out of a response, and parses a stored response again; the client's policy (cache,
budget, retries, log) is the same for both. The replay back-end is the cassette
(`store.Cassette`), answered by the client without any SDK.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from curate.services.teacher.config import TeacherConfig
from curate.services.teacher.prompts import passage_block
from curate.services.teacher.request import TeacherRequest, TeacherSetupError
from curate.services.teacher.store import canonical_json
from curate.services.teacher.usage import usage_from_anthropic, usage_from_openai
from schemas.records import Usage


def cache_id_of(backend: str, teacher: TeacherConfig) -> str:
    """The response cache's key space of a live backend: one per provider and endpoint."""
    return f"{backend}@{teacher.base_url}" if teacher.base_url else backend


class _LiveBackend:
    """What differs between Anthropic and OpenAI-compatible backends."""

    name: str
    provider: Any
    mode: Any

    def __init__(self, teacher: TeacherConfig):
        self.teacher = teacher
        self.http_client_factory: Callable[[], Any] | None = None

    @property
    def cache_id(self) -> str:
        return cache_id_of(self.name, self.teacher)

    def make_client(self) -> Any:
        raise NotImplementedError

    def create_fn(self, client: Any) -> Callable[..., Awaitable[Any]]:
        raise NotImplementedError

    def build_kwargs(self, request: TeacherRequest) -> dict[str, Any]:
        raise NotImplementedError

    def usage_of(self, response: Any) -> Usage:
        raise NotImplementedError

    def answer_json(self, response: Any) -> str | None:
        raise NotImplementedError

    def parse_response(self, text: str) -> Any:
        """A stored response (`model_dump_json` of the SDK object) as the SDK object again."""
        raise NotImplementedError

    def _api_key(self, default_env: str, required: bool) -> str:
        env = self.teacher.api_key_env or default_env
        self.key_env = env
        key = os.environ.get(env)
        if key:
            return key
        if required:
            raise TeacherSetupError(
                f"teacher.backend {self.name!r} needs an API key in ${env} "
                f"(set it, or name another variable in teacher.api_key_env)"
            )
        return "not-needed"


class AnthropicBackend(_LiveBackend):
    name = "anthropic"

    def __init__(self, teacher: TeacherConfig):
        super().__init__(teacher)
        from instructor.v2.core.mode import Mode
        from instructor.v2.core.providers import Provider

        self.provider, self.mode = Provider.ANTHROPIC, Mode.TOOLS
        self.api_key = self._api_key("ANTHROPIC_API_KEY", required=True)

    def make_client(self) -> Any:
        import anthropic

        return anthropic.AsyncAnthropic(
            api_key=self.api_key,
            base_url=self.teacher.base_url,
            max_retries=0,  # our tenacity policy owns retries (see module docstring)
            timeout=self.teacher.timeout_s,
            http_client=self.http_client_factory() if self.http_client_factory else None,
        )

    def create_fn(self, client: Any) -> Callable[..., Awaitable[Any]]:
        return client.messages.create

    def build_kwargs(self, request: TeacherRequest) -> dict[str, Any]:
        passage: dict[str, Any] = {"type": "text", "text": passage_block(request.chunk_text)}
        if self.teacher.prompt_caching:
            passage["cache_control"] = {"type": "ephemeral"}
        # anthropic 2.x `messages.create` has no `temperature` (nor top_p/top_k): Claude
        # samples at its default, which is what self-consistency needs; the n samples of a
        # chunk are n identical requests. `teacher.temperature` applies to openai backends.
        return {
            "model": self.teacher.model,
            "max_tokens": self.teacher.max_tokens,
            "system": [{"type": "text", "text": request.system}],
            "messages": [
                {
                    "role": "user",
                    "content": [passage, {"type": "text", "text": request.instruction}],
                }
            ],
        }

    def usage_of(self, response: Any) -> Usage:
        return usage_from_anthropic(getattr(response, "usage", None))

    def parse_response(self, text: str) -> Any:
        from anthropic.types import Message

        return Message.model_validate_json(text)

    def answer_json(self, response: Any) -> str | None:
        for block in getattr(response, "content", None) or []:
            if getattr(block, "type", None) == "tool_use":
                return canonical_json(block.input)
        texts = [getattr(b, "text", "") for b in getattr(response, "content", None) or []]
        return "".join(texts) or None


class OpenAIBackend(_LiveBackend):
    name = "openai"

    def __init__(self, teacher: TeacherConfig):
        super().__init__(teacher)
        from instructor.v2.core.mode import Mode
        from instructor.v2.core.providers import Provider

        self.provider = Provider.OPENAI
        self.mode = Mode.TOOLS if teacher.openai_mode == "tools" else Mode.JSON
        # Local servers (vLLM, Ollama, llama.cpp) take any key; the OpenAI API needs one.
        self.api_key = self._api_key("OPENAI_API_KEY", required=teacher.base_url is None)

    def make_client(self) -> Any:
        import openai

        return openai.AsyncOpenAI(
            api_key=self.api_key,
            base_url=self.teacher.base_url,
            max_retries=0,
            timeout=self.teacher.timeout_s,
            http_client=self.http_client_factory() if self.http_client_factory else None,
        )

    def create_fn(self, client: Any) -> Callable[..., Awaitable[Any]]:
        return client.chat.completions.create

    def build_kwargs(self, request: TeacherRequest) -> dict[str, Any]:
        return {
            "model": self.teacher.model,
            "max_tokens": self.teacher.max_tokens,
            "temperature": self.teacher.temperature,
            "messages": [
                {"role": "system", "content": request.system},
                {
                    "role": "user",
                    "content": passage_block(request.chunk_text) + "\n\n" + request.instruction,
                },
            ],
        }

    def usage_of(self, response: Any) -> Usage:
        return usage_from_openai(getattr(response, "usage", None))

    def parse_response(self, text: str) -> Any:
        from openai.types.chat import ChatCompletion

        return ChatCompletion.model_validate_json(text)

    def answer_json(self, response: Any) -> str | None:
        choices = getattr(response, "choices", None) or []
        if not choices:
            return None
        message = choices[0].message
        calls = getattr(message, "tool_calls", None) or []
        if calls:
            return str(calls[0].function.arguments)
        return getattr(message, "content", None)
