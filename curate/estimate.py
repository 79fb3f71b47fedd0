"""The teacher cost estimate printed before a run and by `curate run --dry-run`.

Tokens are counted per request (system prompt + passage + instruction + the tool schema)
with tiktoken when its encoding is available offline, else a conservative character
estimate; the method is printed. Prompt caching: the first sample of a chunk writes the
system+passage prefix to the cache, the other samples and the refinement calls read it
(only when the prefix reaches the model's minimum cacheable length). Refinement is
counted as an upper bound: every chunk repaired in every round (one request per chunk and
round, as the refine stage sends them). Requests already in the response cache are free.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from curate.run.rundir import read_parquet
from curate.services.teacher import prompts
from curate.services.teacher.backends import cache_id_of
from curate.services.teacher.config import MIN_CACHEABLE_TOKENS
from curate.services.teacher.factory import response_cache_path
from curate.services.teacher.request import TeacherRequest, request_hash
from curate.services.teacher.store import ResponseCache
from curate.services.teacher.usage import add_usage, cost_usd, count_tokens, token_method
from schemas.artifacts import CHUNKS, REDACTED_CHUNKS
from schemas.records import Usage
from schemas.tasks import output_model

if TYPE_CHECKING:
    from rich.console import Console

    from curate.config import PipelineConfig


@dataclass
class Estimate:
    chunks: int
    requests: int
    cached_requests: int
    generate: Usage
    refine_upper: Usage
    budget_usd: float | None
    price_known: bool
    token_method: str
    source: str

    @property
    def total_usd(self) -> float:
        return self.generate.cost_usd + self.refine_upper.cost_usd

    def as_dict(self) -> dict[str, Any]:
        return {
            "chunks": self.chunks, "requests": self.requests, "cached_requests": self.cached_requests,
            "generate": self.generate.model_dump(), "refine_upper_bound": self.refine_upper.model_dump(),
            "total_usd": self.total_usd, "budget_usd": self.budget_usd, "price_known": self.price_known,
            "token_method": self.token_method, "chunks_from": self.source,
        }


def _min_cacheable(model: str) -> int:
    matches = [key for key in MIN_CACHEABLE_TOKENS if model.startswith(key)]
    return MIN_CACHEABLE_TOKENS[max(matches, key=len)] if matches else 1024


def load_chunks(config: PipelineConfig) -> tuple[pl.DataFrame, str]:
    """The chunks the teacher would see: from the run directory, else by running ingest in a temp dir."""
    run_path = config.run_path
    for artifact in (REDACTED_CHUNKS, CHUNKS):
        path = run_path / f"{artifact}.parquet"
        if path.exists():
            return read_parquet(path), str(path)
    from curate.ingest.stages import STAGES as INGEST_STAGES
    from curate.run.runner import Runner

    with tempfile.TemporaryDirectory(prefix="assay-estimate-") as temp:
        scratch = config.model_copy(update={"run_dir": temp})
        from rich.console import Console

        Runner(scratch, INGEST_STAGES, console=Console(quiet=True), show_progress=False).run()
        path = Path(temp) / f"{CHUNKS}.parquet"
        if not path.exists():
            return pl.DataFrame({"chunk_id": [], "text": []}), "ingest produced no chunks"
        return read_parquet(path), "a dry ingest of the configured paths"


def estimate(config: PipelineConfig, chunks: pl.DataFrame | None = None, source: str = "given") -> Estimate:
    if chunks is None:
        chunks, source = load_chunks(config)
    teacher = config.teacher
    task = config.task
    model = output_model(task)
    system = prompts.system_prompt(task)
    instruction = prompts.instruction(task)
    schema_tokens = count_tokens(json.dumps(model.model_json_schema()))
    fixed = count_tokens(system) + schema_tokens + count_tokens(instruction) + 40  # + message framing
    price = teacher.price_for()
    min_cache = _min_cacheable(teacher.model)
    cache = None
    cache_path = response_cache_path(config, config.run_path)
    if teacher.backend != "replay" and cache_path.exists():
        cache = ResponseCache(cache_path)
    backend_id = cache_id_of(teacher.backend, teacher)
    gen = Usage()
    ref = Usage()
    cached = 0
    samples = teacher.samples
    rounds = config.refine.rounds
    output_tokens = teacher.expected_output_tokens
    system_tokens = count_tokens(system)
    claude = teacher.backend == "anthropic" or (teacher.backend == "replay" and teacher.model.startswith("claude"))
    suffix = fixed - system_tokens - schema_tokens
    for row in chunks.select("chunk_id", "text").iter_rows(named=True):
        passage = count_tokens(prompts.passage_block(row["text"]))
        prefix = system_tokens + schema_tokens + passage
        cacheable = teacher.prompt_caching and claude and prefix >= min_cache
        for index in range(samples):
            if cache is not None:
                hashed = request_hash(
                    teacher,
                    TeacherRequest(row["chunk_id"], system, row["text"], instruction, model, index),
                )
                if cache.get(backend_id, hashed) is not None:
                    cached += 1
                    continue
            if cacheable:
                first = index == 0
                usage = Usage(
                    input_tokens=suffix,
                    cache_write_tokens=prefix if first else 0,
                    cache_read_tokens=0 if first else prefix,
                    output_tokens=output_tokens,
                )
            else:
                usage = Usage(input_tokens=fixed + passage, output_tokens=output_tokens)
            gen = _plus(gen, usage, price, teacher.batch_mode)
        for _round in range(rounds):
            # Upper bound: every chunk needs a repair in every round (the refine stage sends
            # one request per chunk without an example per round). A refinement request
            # repeats the prefix and adds the rejected answer and the reason.
            extra = output_tokens + 60
            if cacheable:
                usage = Usage(input_tokens=suffix + extra, cache_read_tokens=prefix, output_tokens=output_tokens)
            else:
                usage = Usage(input_tokens=fixed + passage + extra, output_tokens=output_tokens)
            ref = _plus(ref, usage, price, teacher.batch_mode)
    if cache is not None:
        cache.close()
    return Estimate(
        chunks=chunks.height, requests=chunks.height * samples, cached_requests=cached,
        generate=gen, refine_upper=ref, budget_usd=teacher.budget_usd, price_known=price is not None,
        token_method=token_method(), source=source,
    )


def _plus(total: Usage, usage: Usage, price: Any, batch: bool) -> Usage:
    return add_usage(total, usage.model_copy(update={"cost_usd": cost_usd(usage, price, batch=batch)}))


def print_estimate(cfg: PipelineConfig, console: Console) -> Estimate:
    """Print the teacher cost estimate (what `curate run --dry-run` shows)."""
    from rich.table import Table

    result = estimate(cfg)
    teacher = cfg.teacher
    table = Table(title=f"Teacher cost estimate — {teacher.backend}:{teacher.model}")
    table.add_column("part")
    table.add_column("input", justify="right")
    table.add_column("cache write", justify="right")
    table.add_column("cache read", justify="right")
    table.add_column("output", justify="right")
    table.add_column("USD", justify="right")
    for name, usage in (
        (f"generate ({result.requests - result.cached_requests} requests)", result.generate),
        (f"refine, upper bound ({cfg.refine.rounds} rounds)", result.refine_upper),
    ):
        table.add_row(
            name, f"{usage.input_tokens:,}", f"{usage.cache_write_tokens:,}", f"{usage.cache_read_tokens:,}",
            f"{usage.output_tokens:,}", f"{usage.cost_usd:.4f}",
        )
    table.add_row("total (upper bound)", "", "", "", "", f"{result.total_usd:.4f}")
    console.print(table)
    console.print(
        f"{result.chunks} chunks (from {result.source}) × {teacher.samples} samples; "
        f"{result.cached_requests} requests already in the response cache (free); "
        f"tokens counted with {result.token_method}; "
        f"{'Message Batches: half price; ' if teacher.batch_mode else ''}"
        f"expected output {teacher.expected_output_tokens} tokens per answer."
    )
    if teacher.backend == "replay":
        console.print("backend replay: answers come from the cassette, nothing is paid.")
    elif not result.price_known:
        from curate.services.teacher.preflight import price_problems

        for problem in price_problems(teacher) or [f"no price for model {teacher.model!r}: costs shown as $0"]:
            console.print(f"[yellow]{problem}[/yellow]")
    if result.budget_usd is not None:
        verdict = "within" if result.total_usd <= result.budget_usd else "OVER"
        console.print(f"budget ${result.budget_usd:.2f}: estimate {verdict} budget")
    return result
