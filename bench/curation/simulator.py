"""A SIMULATED teacher that answers like a real teacher does wrong (no model behind it).

`FaultyTeacher` decides, per request, what a teacher would answer for a classification
task (`{"label": ..., "quote": ...}`) given the true family of the passage, and makes the
mistakes published synthetic-data pipelines report, at set rates and from a seed:

- the wrong family, picked among families that are plausibly confused with the true one
  (AC <-> IA, AU <-> SI, CP <-> IR, ...); some chunks are *hard* and draw wrong labels
  more often, so two samples can agree on the same wrong family (what voting cannot see);
- a quote that is not in the chunk: cut from another control, or the chunk's words reworded;
- an "As an AI language model" preamble in the quote;
- broken output: truncated JSON, a missing field, a label outside the taxonomy (the family
  title instead of its code, or lower case).

Refinement requests (they carry the rejected answer and the reason) are repaired with
probability `repair_rate`: the quote is then copied from the passage, and the label kept
unless the reason was about the label (then it is drawn again, wrong at the usual rate).
Otherwise the teacher repeats the rejected answer; when the rejection was a split vote
(`no_majority`, nothing wrong in the answer itself), it answers the label again, wrong at its
usual rate, with the same quote.

`SimulatedTeacherServer` serves it over the OpenAI chat-completions wire format (tool calls),
so the real generate and refine stages reach it through instructor and the openai SDK.
Identical requests (the n self-consistency samples of a chunk) are told apart by arrival
order: the k-th identical request is sample k, and its answer is seeded by (seed, request, k).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

# Families a teacher plausibly confuses with each rev4 family (first = most confusable).
CONFUSABLE: dict[str, tuple[str, ...]] = {
    "AC": ("IA", "SC"), "AT": ("PS", "PL"), "AU": ("SI", "IR"), "CA": ("RA", "PM"),
    "CM": ("SA", "SI"), "CP": ("IR", "SC"), "IA": ("AC", "SC"), "IR": ("CP", "SI"),
    "MA": ("MP", "PE"), "MP": ("PE", "SC"), "PE": ("MP", "MA"), "PL": ("PM", "SA"),
    "PM": ("PL", "RA"), "PS": ("AT", "AC"), "RA": ("CA", "PM"), "SA": ("CM", "PL"),
    "SC": ("AC", "SI"), "SI": ("SC", "AU"),
}
LABEL_REASONS = {"no_majority", "minority_label", "label_not_in_taxonomy", "invalid_json", "missing_field",
                 "schema_violation", "schema_error", "teacher_failed"}
VOTE_REASONS = {"no_majority"}
PASSAGE = re.compile(r"<passage>\n(.*?)\n</passage>", re.S)
REFINE = re.compile(r"Rejected answer: (.*)\nReason: ([^\n]*)", re.S)


@dataclass(frozen=True)
class Rates:
    """Per-sample probabilities of each mistake (independent draws), and of a repair."""

    hard_chunk: float = 0.20  # share of chunks on which the teacher is often wrong
    wrong_family_hard: float = 0.35
    wrong_family_easy: float = 0.18
    foreign_quote: float = 0.24  # a quote cut from another control
    reworded_quote: float = 0.22  # the chunk's words, reordered
    ai_preamble: float = 0.03
    broken: float = 0.12  # truncated JSON / missing field / label outside the taxonomy
    repair_rate: float = 0.05  # a refine request is repaired correctly


@dataclass
class FaultyTeacher:
    """Answers from the truth (passage -> family) with mistakes at `rates`; counts what it did."""

    truth: dict[str, str]  # passage text -> true family code
    family_titles: dict[str, str]
    rates: Rates = field(default_factory=Rates)
    seed: int = 0
    # near-copy passage -> the passage it copies: the teacher answers both alike (same label,
    # the quote at the same place), so the planted copies give near-duplicate examples
    copy_of: dict[str, str] = field(default_factory=dict)
    planted: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._passages = sorted(self.truth)

    def _rng(self, *parts: object) -> random.Random:
        key = hashlib.sha256(json.dumps([self.seed, *map(str, parts)]).encode()).hexdigest()
        return random.Random(int(key[:16], 16))

    def _span(self, text: str, rng: random.Random) -> str:
        words = text.split()
        size = min(len(words), rng.randint(6, 14))
        start = rng.randint(0, len(words) - size)
        return " ".join(words[start : start + size])

    def _label(self, family: str, passage: str, rng: random.Random) -> str:
        hard = self._rng("hard", passage).random() < self.rates.hard_chunk
        p = self.rates.wrong_family_hard if hard else self.rates.wrong_family_easy
        if rng.random() >= p:
            return family
        self.planted["wrong_family"] += 1
        options = CONFUSABLE.get(family, ())
        # hard chunks lean on their most confusable family, so wrong votes can agree
        lean = 0.7 if hard else 0.5
        return options[0] if options and rng.random() < lean else rng.choice(options or (family,))

    def _quote(self, passage: str, rng: random.Random) -> str:
        quote = self._span(passage, rng)
        roll = rng.random()
        r = self.rates
        if roll < r.foreign_quote:
            self.planted["foreign_quote"] += 1
            other = self._passages[rng.randrange(len(self._passages))]
            return self._span(other, rng) if other != passage else " ".join(reversed(quote.split()))
        if roll < r.foreign_quote + r.reworded_quote:
            self.planted["reworded_quote"] += 1
            words = quote.split()
            rng.shuffle(words)
            return " ".join(words)
        if roll < r.foreign_quote + r.reworded_quote + r.ai_preamble:
            self.planted["ai_preamble"] += 1
            return f"As an AI language model, I would point to: {quote}"
        return quote

    def _broken(self, label: str, quote: str, rng: random.Random) -> str:
        kind = rng.randrange(4)
        self.planted[f"broken_{('truncated', 'missing_field', 'family_title', 'lower_case')[kind]}"] += 1
        if kind == 0:
            return json.dumps({"label": label, "quote": quote})[: rng.randint(10, 25)]
        if kind == 1:
            return json.dumps({"label": label})
        if kind == 2:
            return json.dumps({"label": self.family_titles.get(label, label), "quote": quote})
        return json.dumps({"label": label.lower(), "quote": quote})

    def sample(self, passage: str, k: int) -> str:
        """The k-th generate sample for a passage: raw JSON text, possibly broken."""
        family = self.truth.get(passage)
        if family is None:
            raise KeyError("passage not in the simulator's truth table")
        original = self.copy_of.get(passage, passage)
        rng = self._rng("sample", original, k)
        label, quote = self._label(family, original, rng), self._quote(passage, rng)
        if rng.random() < self.rates.broken:
            return self._broken(label, quote, rng)
        return json.dumps({"label": label, "quote": quote})

    def repair(self, passage: str, rejected: str, reason: str, k: int) -> str:
        """The answer to a refine request: repaired with probability `repair_rate`, else the same."""
        rng = self._rng("repair", passage, rejected, reason, k)
        self.planted["repair_requests"] += 1
        family = self.truth[passage]
        code = reason.split(":", 1)[0].split("/")[-1]
        try:
            previous = json.loads(rejected)
        except json.JSONDecodeError:
            previous = None
        if rng.random() >= self.rates.repair_rate:
            if code in VOTE_REASONS and isinstance(previous, dict) and previous.get("quote"):
                # told its votes disagreed, the teacher answers the label again (wrong at its usual
                # rate) and keeps its quote: nothing in the answer itself was at fault
                return json.dumps({"label": self._label(family, passage, rng), "quote": previous["quote"]})
            return rejected if rejected.strip() not in ("", "null") else json.dumps({"label": "?"})
        self.planted["repaired"] += 1
        kept = previous.get("label") if isinstance(previous, dict) else None
        label = kept if kept in CONFUSABLE and code not in LABEL_REASONS else self._label(family, passage, rng)
        return json.dumps({"label": label, "quote": self._span(passage, rng)})

    def answer(self, user_text: str, k: int) -> str:
        match = PASSAGE.search(user_text)
        passage = match.group(1) if match else user_text
        refine = REFINE.search(user_text)
        if refine:
            return self.repair(passage, refine.group(1).strip(), refine.group(2).strip(), k)
        return self.sample(passage, k)


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


class SimulatedTeacherServer:
    """OpenAI-compatible chat-completions server over a `FaultyTeacher` (tool-call answers).

    `with SimulatedTeacherServer(teacher) as server:` then point `teacher.base_url` at
    `server.openai_base_url`. Counts requests (`received`, by purpose in `by_purpose`).
    """

    def __init__(self, teacher: FaultyTeacher, port: int = 0):
        self.teacher = teacher
        self.port = port
        self.received = 0
        self.by_purpose: Counter[str] = Counter()
        self._arrivals: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._started = threading.Event()

    @property
    def openai_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> SimulatedTeacherServer:
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("simulated teacher server did not start")
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._startup())
        self._started.set()
        self._loop.run_forever()

    async def _startup(self) -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        user = "\n".join(str(m.get("content", "")) for m in body.get("messages", []) if m.get("role") == "user")
        key = hashlib.sha256(user.encode()).hexdigest()
        with self._lock:
            self.received += 1
            k = self._arrivals[key]
            self._arrivals[key] += 1
            self.by_purpose["refine" if REFINE.search(user) else "generate"] += 1
            try:
                arguments = self.teacher.answer(user, k)
            except KeyError as error:
                return web.json_response({"error": {"message": str(error)}}, status=400)
        tools = body.get("tools") or [{"function": {"name": "answer"}}]
        name = tools[0]["function"]["name"]
        prompt = _tokens(json.dumps(body.get("messages", [])))
        return web.json_response({
            "id": f"chatcmpl-sim-{self.received}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "simulated-teacher"),
            "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": {
                "role": "assistant", "content": None,
                "tool_calls": [{"id": f"call_{self.received}", "type": "function",
                                "function": {"name": name, "arguments": arguments}}]}}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": _tokens(arguments),
                      "total_tokens": prompt + _tokens(arguments)},
        })
