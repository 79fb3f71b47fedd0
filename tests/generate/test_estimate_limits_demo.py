"""Cost estimate, client-side rate limits, and the hand-written demo cassette."""

from __future__ import annotations

import asyncio
import io
import json
import time

import polars as pl
import pytest
from rich.console import Console

from curate.config import load_config
from curate.estimate import estimate, print_estimate
from curate.generate.stages import generate
from curate.run.stage import StageContext
from curate.services.teacher import prompts
from curate.services.teacher.limits import DefaultLimiter
from curate.services.teacher.retry import backoff_wait, retry_after_seconds
from curate.services.teacher.usage import cost_usd, count_tokens
from schemas.records import Usage
from tests.generate.conftest import chunks_frame, make_config
from tests.servers.mock_teacher import MockTeacherServer


def test_estimate_counts_samples_refinement_and_prices(tmp_path):
    config = make_config(tmp_path, {"backend": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1",
                                    "samples": 3, "expected_output_tokens": 100,
                                    "prices": {"m": {"input": 2.0, "output": 10.0}}},
                         refine={"rounds": 2})
    chunks = chunks_frame(5)
    result = estimate(config, chunks)
    assert result.requests == 15 and result.cached_requests == 0
    assert result.generate.output_tokens == 15 * 100
    system = count_tokens(prompts.system_prompt(config.task))
    assert result.generate.input_tokens > 15 * system  # system + passage + schema + instruction each time
    assert result.generate.cost_usd == pytest.approx(cost_usd(result.generate, config.teacher.price_for()))
    # refinement upper bound: every chunk repaired in each of 2 rounds, with the rejected answer added
    assert result.refine_upper.output_tokens == 2 * 5 * 100
    assert result.refine_upper.input_tokens > 2 / 3 * result.generate.input_tokens


def test_estimate_counts_prompt_cache_for_long_prefixes_and_free_cached_answers(tmp_path):
    long_text = "Access is granted on the principle of least privilege. " * 120  # > 1024 tokens
    chunks = pl.DataFrame({"chunk_id": ["a", "b"], "doc_id": ["d", "d"], "text": [long_text, long_text + "x"]})
    config = make_config(tmp_path, {"backend": "anthropic", "samples": 3})
    result = estimate(config, chunks)
    assert result.generate.cache_write_tokens > 0 and result.generate.cache_read_tokens == 2 * result.generate.cache_write_tokens
    uncached = estimate(make_config(tmp_path, {"backend": "anthropic", "samples": 3, "prompt_caching": False}), chunks)
    assert result.generate.cost_usd < uncached.generate.cost_usd
    batch = estimate(make_config(tmp_path, {"backend": "anthropic", "samples": 3, "batch_mode": True}), chunks)
    assert batch.generate.cost_usd == pytest.approx(result.generate.cost_usd / 2)


def test_estimate_subtracts_answers_already_cached(tmp_path):
    with MockTeacherServer() as server:
        config = make_config(tmp_path, {"backend": "openai", "model": "m", "base_url": server.openai_base_url,
                                        "samples": 2, "prices": {"m": {"input": 1.0, "output": 1.0}}})
        chunks = chunks_frame(3)
        before = estimate(config, chunks)
        generate(chunks.head(2), StageContext(config=config, run_dir=str(config.run_path), stage="generate",
                                              show_progress=False))
        after = estimate(config, chunks)
    assert before.cached_requests == 0 and after.cached_requests == 4
    assert after.generate.cost_usd == pytest.approx(before.generate.cost_usd / 3, rel=0.02)  # 1 of 3 similar chunks left


def test_print_estimate_on_the_demo_config(demo_config_path, tmp_path):
    config = load_config(demo_config_path)
    config = config.model_copy(update={"run_dir": str(tmp_path / "run")})  # ingest into a temp dir
    buffer = io.StringIO()
    result = print_estimate(config, Console(file=buffer, width=140))
    text = buffer.getvalue()
    assert result.chunks > 0 and result.requests == result.chunks * config.teacher.samples
    assert "Teacher cost estimate" in text and "replay" in text and f"{result.total_usd:.4f}" in text


def test_default_limiter_holds_the_request_rate():
    limiter = DefaultLimiter(requests_per_minute=1200, tokens_per_minute=None)  # 20 per second

    async def burst() -> float:
        started = time.monotonic()
        await asyncio.gather(*(limiter.acquire(10) for _ in range(40)))
        return time.monotonic() - started

    elapsed = asyncio.run(burst())
    assert 0.9 <= elapsed < 3.0  # 40 requests at 20/s after a bucket of 20: about 1 s


def test_default_limiter_holds_the_token_rate():
    limiter = DefaultLimiter(requests_per_minute=None, tokens_per_minute=60_000)  # 1000 tokens per second

    async def burst() -> float:
        await limiter.acquire(60_000)  # a full minute's worth empties the bucket
        started = time.monotonic()
        await limiter.acquire(1_000)  # one more second's worth must wait for it to drain
        return time.monotonic() - started

    elapsed = asyncio.run(burst())
    assert 0.8 <= elapsed < 2.0


def test_retry_after_header_forms():
    import httpx2

    class Error(Exception):
        def __init__(self, headers):
            self.response = httpx2.Response(429, headers=headers)

    assert retry_after_seconds(Error({"retry-after": "3"})) == 3.0
    assert retry_after_seconds(Error({"retry-after-ms": "250"})) == 0.25
    assert retry_after_seconds(Error({})) is None

    class State:
        attempt_number = 3

        class outcome:
            @staticmethod
            def exception():
                return Error({})

    waits = [backoff_wait(1.0, 60.0)(State) for _ in range(200)]
    assert min(waits) >= 0 and max(waits) <= 4.0 and len(set(waits)) > 100  # full jitter over [0, 4]


def test_demo_cassette_answers_every_demo_chunk(demo_config_path, tmp_path):
    """The shipped hand-written cassette matches the requests the demo pipeline makes."""
    from curate.generate.stages import STAGES as GENERATE
    from curate.ingest.stages import STAGES as INGEST
    from curate.redact.stages import STAGES as REDACT
    from curate.run.runner import Runner

    config = load_config(demo_config_path).model_copy(update={"run_dir": str(tmp_path / "run")})
    result = Runner(config, INGEST + REDACT + GENERATE,
                    console=Console(quiet=True), show_progress=False).run()
    assert result.stages[-1].name == "generate" and result.stages[-1].status == "complete"
    samples = pl.read_parquet(tmp_path / "run" / "generate" / "samples.parquet")
    errors = pl.read_parquet(tmp_path / "run" / "generate" / "errors.parquet")
    assert errors.height == 0, errors["message"].to_list()[:3]
    assert samples.height == samples["chunk_id"].n_unique() * 3
    assert samples.filter(pl.col("status") == "schema_error").height == 2  # the deliberate schema violations
    cassette = [json.loads(line) for line in (demo_config_path.parent / "cassette.handwritten-sample.jsonl").open()]
    assert all("hand-written" in entry["source"] for entry in cassette)
    flaws = [entry["source"].split("deliberate flaw: ")[1].rstrip("]") for entry in cassette if "deliberate flaw" in entry["source"]]
    assert {"wrong-label", "no-majority", "ungrounded-quote", "schema-violation", "near-duplicate"} <= set(flaws)


def test_cost_of_usage():
    from curate.services.teacher.config import Price

    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000, cache_read_tokens=1_000_000, cache_write_tokens=1_000_000)
    price = Price(input=3, output=15, cache_read=0.3, cache_write=3.75)
    assert cost_usd(usage, price) == pytest.approx(22.05)
    assert cost_usd(usage, price, batch=True) == pytest.approx(11.025)
    assert cost_usd(usage, None) == 0.0
