"""Checks before any stage runs: can the teacher be used as configured?

A run that cannot reach its teacher, or whose key is rejected, or whose model has a typo,
should fail in a second with one message, not after ingest and redaction, and not after
hundreds of failed requests. `teacher_preflight(config)` returns the problems it finds
(an empty list: go):

- price: the model is in the price table (`teacher.prices`, the built-in Claude prices)
  or priced in config (`teacher.price`); otherwise an error, unless
  `teacher.allow_unpriced: true` says that a $0 cost report is wanted (a typo'd model name
  otherwise runs silently at "$0.00"); a budget needs a price either way;
- replay: the cassette file exists;
- live: the API key variable is set (where the endpoint needs one), then, unless
  `teacher.preflight: false`, one cheap call that checks key, endpoint and model together:
  Anthropic `messages.count_tokens` (free), OpenAI-compatible `models.list` (the model
  must be among the served ones).

The command line runs a list of such checks (`run_preflight`), so another part of the
pipeline can add its own without touching this module.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from curate.services.teacher.config import DEFAULT_PRICES, TeacherConfig
from curate.services.teacher.failures import Endpoint, fatal_for_status, is_connection_failure

if TYPE_CHECKING:
    from curate.services.teacher.factory import TeacherSettings

EXIT_PREFLIGHT = 5  # the command's exit status when a preflight check fails (no stage ran)

Check = Callable[[Any], list[str]]  # called with the pipeline config

ANTHROPIC_URL = "https://api.anthropic.com"
OPENAI_URL = "https://api.openai.com/v1"


def run_preflight(config: object, checks: Sequence[Check]) -> list[str]:
    """Every problem every check finds (each check sees the whole config)."""
    return [problem for check in checks for problem in check(config)]


def teacher_preflight(config: TeacherSettings, *, http_client: Any | None = None) -> list[str]:
    """Price, cassette, key, then one call to the endpoint (see the module docstring)."""
    teacher = config.teacher
    problems = price_problems(teacher)
    if teacher.backend == "replay":
        if not teacher.cassette:
            problems.append("teacher.backend 'replay' needs teacher.cassette (a JSONL file of recorded answers)")
        elif not config.resolve(teacher.cassette).exists():
            problems.append(f"teacher.cassette {config.resolve(teacher.cassette)} does not exist "
                            "(record one with a live backend and teacher.record: true)")
        return problems
    key_env, key = api_key(teacher)
    if key is None:
        problems.append(f"teacher.backend {teacher.backend!r} needs an API key in ${key_env}: set it "
                        "(or name another variable in teacher.api_key_env)")
    if problems or not teacher.preflight:
        return problems  # no call with a config already known to be wrong
    problem = endpoint_problem(teacher, key_env, key or "not-needed", http_client=http_client)
    return [problem] if problem else []


def price_problems(teacher: TeacherConfig) -> list[str]:
    if teacher.price_for() is not None:
        return []
    if teacher.allow_unpriced:
        if teacher.budget_usd is not None:
            return [f"teacher.budget_usd is set but model {teacher.model!r} has no price, so no budget can "
                    "hold: set teacher.price (USD per million tokens)"]
        return []
    known = sorted({*DEFAULT_PRICES, *teacher.prices})
    close = difflib.get_close_matches(teacher.model, known, n=1, cutoff=0.8)
    hint = f" (a typo? did you mean {close[0]!r}?)" if close else ""
    return [
        f"teacher.model {teacher.model!r} has no price{hint}: its cost would be reported as $0.00 and no "
        "budget could stop it. Set teacher.price: {input: ..., output: ...} (USD per million tokens), add it "
        "to teacher.prices, or set teacher.allow_unpriced: true to run it unpriced."
    ]


def api_key(teacher: TeacherConfig) -> tuple[str, str | None]:
    """The key's variable and value; a local OpenAI-compatible server needs none."""
    env = teacher.api_key_env or ("ANTHROPIC_API_KEY" if teacher.backend == "anthropic" else "OPENAI_API_KEY")
    key = os.environ.get(env)
    if key is None and teacher.backend == "openai" and teacher.base_url is not None:
        return env, "not-needed"
    return env, key


def endpoint_problem(teacher: TeacherConfig, key_env: str, key: str, *, http_client: Any | None = None) -> str | None:
    """One cheap call; None when key, endpoint and model are fine."""
    timeout = min(teacher.timeout_s, 30.0)
    try:
        if teacher.backend == "anthropic":
            import anthropic

            url = teacher.base_url or ANTHROPIC_URL
            with anthropic.Anthropic(api_key=key, base_url=teacher.base_url, max_retries=0, timeout=timeout,
                                     http_client=http_client) as client:
                client.messages.count_tokens(model=teacher.model, messages=[{"role": "user", "content": "ping"}])
            return None
        import openai

        url = teacher.base_url or OPENAI_URL
        with openai.OpenAI(api_key=key, base_url=teacher.base_url, max_retries=0, timeout=timeout,
                           http_client=http_client) as openai_client:
            served = [model.id for model in openai_client.models.list()]
    except Exception as error:
        return _describe(error, Endpoint(url=url.rstrip("/"), key_env=key_env, model=teacher.model))
    if teacher.model not in served:
        close = difflib.get_close_matches(teacher.model, served, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        listed = ", ".join(served[:10]) + (" ..." if len(served) > 10 else "")
        return f"model {teacher.model!r} is not served by {url.rstrip('/')} (it serves: {listed}){hint} Check teacher.model."
    return None


def _describe(error: BaseException, where: Endpoint) -> str:
    fatal = fatal_for_status(error, where)
    if fatal is not None:
        return fatal.message
    if is_connection_failure(error):
        return (f"cannot reach {where.url} ({type(error).__name__}: {error}). Check that the server is up and "
                "teacher.base_url, or set teacher.preflight: false to skip this check.")
    status = getattr(error, "status_code", None)
    return (f"{where.url} answered the preflight call with {status or type(error).__name__} ({error}); "
            "set teacher.preflight: false if this endpoint has no such call.")
