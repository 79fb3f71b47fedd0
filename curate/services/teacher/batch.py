"""Anthropic Message Batches: submit, poll, collect; resume by batch id after a crash.

`teacher.batch_mode: true` sends the requests that the response cache cannot answer as one
Message Batch (half price, results within 24 hours). The batch id and its requests'
custom ids (the request hashes) are written to the state database right after the batch
is created, so a crashed or interrupted run resumes by polling and collecting the same
batch instead of paying for a second one. Collected answers go to the response cache like
live answers. Request parameters (tools, tool_choice) are built by instructor's Anthropic
tool-mode handler, as for live calls; there is no re-ask in batch mode: an answer that
fails validation is kept as a schema error (the refine stage can repair it).

Request log: one `sent: true` line per request with its exact params when the batch is
submitted (status "batch_submitted"), and one line per result when it is collected
(status "ok" / "errored" / ..., with tokens and cost; payload_kind "batch_result").
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from curate.services.teacher.request import BudgetExceeded, TeacherAnswer, TeacherRequest, request_hash
from curate.services.teacher.store import canonical_json
from curate.services.teacher.usage import cost_usd, count_tokens
from schemas.records import Usage

if TYPE_CHECKING:
    from curate.services.teacher.client import TeacherClient

MAX_BATCH_REQUESTS = 100_000


def batch_params(client: TeacherClient, request: TeacherRequest) -> dict[str, Any]:
    """The Messages API params of one request, as instructor's tool mode builds them."""
    from instructor.v2.core.registry import mode_registry
    from instructor.v2.core.response_model import prepare_response_model

    live = client.live
    assert live is not None
    handlers = mode_registry.get_handlers(live.provider, live.mode)
    model = prepare_response_model(request.response_model)
    _prepared, params = handlers.request_handler(response_model=model, kwargs=live.build_kwargs(request))
    return dict(params)


async def ask_many_batched(client: TeacherClient, requests: Sequence[TeacherRequest]) -> list[TeacherAnswer]:

    assert client.cache is not None and client.live is not None
    state = client._loop_state()
    hashes = [request_hash(client.teacher, r) for r in requests]
    by_hash = dict(zip(hashes, requests, strict=True))
    collected: set[str] = set()
    # 1. finish any batch a crashed run left behind
    for batch_id, custom_ids in client.cache.open_batches(client.backend_id):
        collected |= await _poll_and_collect(client, state.client, batch_id, {h: by_hash.get(h) for h in custom_ids})
    # 2. what the cache cannot answer goes into a new batch, as far as the budget allows
    missing = [h for h in dict.fromkeys(hashes) if client.cache.get(client.backend_id, h) is None]
    to_send: list[str] = []
    params_of: dict[str, dict[str, Any]] = {}
    reservations: list[int | None] = []
    for rhash in missing:
        params = batch_params(client, by_hash[rhash])
        try:
            reservations.append(client._reserve(count_tokens(canonical_json(params)), request_hash=rhash, batch=True))
        except BudgetExceeded:
            break
        params_of[rhash] = params
        to_send.append(rhash)
    for start in range(0, len(to_send), MAX_BATCH_REQUESTS):
        part = to_send[start : start + MAX_BATCH_REQUESTS]
        batch = await state.client.messages.batches.create(
            requests=[{"custom_id": rhash, "params": params_of[rhash]} for rhash in part]
        )
        client.cache.save_batch(batch.id, client.backend_id, part, "submitted")
        for rhash in part:
            request = by_hash[rhash]
            client.counts["sent"] += 1
            client.log.write(
                provider="anthropic", model=client.teacher.model, base_url=client.teacher.base_url,
                purpose=request.purpose or client.purpose, chunk_id=request.chunk_id,
                sample_index=request.sample_index, round=request.round, request_hash=rhash, sent=True,
                cached=False, status="batch_submitted", attempt=1, payload=params_of[rhash],
                payload_kind="provider", batch_id=batch.id, input_tokens=0, output_tokens=0,
                cache_read_tokens=0, cache_write_tokens=0, cost_usd=0.0, error=None,
            )
        collected |= await _poll_and_collect(client, state.client, batch.id, {h: by_hash[h] for h in part})
    for reservation in reservations:  # collected answers are in the ledger now, at their cost
        client.cache.release(reservation)
    # 3. every answer now comes from the cache (or is a budget stop / a failed batch item)
    return [_final_answer(client, request, rhash, collected) for request, rhash in zip(requests, hashes, strict=True)]


def _final_answer(client: TeacherClient, request: TeacherRequest, rhash: str, collected: set[str]) -> TeacherAnswer:
    assert client.cache is not None
    hit = client.cache.get(client.backend_id, rhash)
    if hit is not None:
        answer = client._from_recorded(request, rhash, hit.raw_json, hit.error, hit.error_kind, hit.usage)
        answer.cached = rhash not in collected  # paid in this run when collected now
        if answer.cached:
            client.counts["cached"] += 1
        return answer
    if client._budget_hit:
        return client._budget_answer(request, rhash, Usage())
    return client._answer(
        request, rhash, output=None, raw_json=None,
        error="the message batch returned no successful result for this request (the next run asks again)",
        error_kind="api", usage=Usage(), cached=False,
    )


async def _poll_and_collect(
    client: TeacherClient, sdk: Any, batch_id: str, requests: dict[str, TeacherRequest | None]
) -> set[str]:
    """Wait for the batch to end, store its answers in the response cache; their hashes."""
    stored: set[str] = set()
    while True:
        batch = await sdk.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended":
            break
        await asyncio.sleep(client.teacher.batch_poll_s)
    assert client.cache is not None and client.live is not None
    decoder = await sdk.messages.batches.results(batch_id)
    async for item in decoder:
        rhash = item.custom_id
        request = requests.get(rhash)
        result = item.result
        if result.type != "succeeded":
            error = getattr(result, "error", None)
            client.log.write(
                provider="anthropic", model=client.teacher.model, base_url=client.teacher.base_url,
                purpose=(request.purpose if request else None) or client.purpose,
                chunk_id=request.chunk_id if request else None, sample_index=request.sample_index if request else None,
                round=request.round if request else None, request_hash=rhash, sent=False, cached=False,
                status=result.type, attempt=1, payload=None, payload_kind="batch_result", batch_id=batch_id,
                input_tokens=0, output_tokens=0, cache_read_tokens=0, cache_write_tokens=0, cost_usd=0.0,
                error=str(error) if error is not None else result.type,
            )
            continue  # not cached: the next run asks again
        message = result.message
        usage = client.live.usage_of(message)
        usage = usage.model_copy(update={"cost_usd": cost_usd(usage, client.price, batch=True)})
        raw_json = client.live.answer_json(message)
        error_text, error_kind = None, None
        if request is not None:
            try:
                request.response_model.model_validate_json(raw_json or "")
            except ValidationError as invalid:
                error_text, error_kind = f"ValidationError (batch mode, no re-ask): {invalid}"[:600], "schema"
        client._spent += usage.cost_usd
        client.cache.record_spend(client.run_dir, rhash, usage.cost_usd)
        client.cache.put(
            client.backend_id, rhash, model=client.teacher.model,
            chunk_id=request.chunk_id if request else "", sample_index=request.sample_index if request else 0,
            purpose=(request.purpose if request else None) or client.purpose, raw_json=raw_json,
            error=error_text, error_kind=error_kind, usage=usage,
        )
        stored.add(rhash)
        purpose = (request.purpose if request else None) or client.purpose
        client.log.write(
            provider="anthropic", model=client.teacher.model, base_url=client.teacher.base_url,
            purpose=purpose, chunk_id=request.chunk_id if request else None,
            sample_index=request.sample_index if request else None, round=request.round if request else None,
            request_hash=rhash, sent=False, cached=False, status="ok" if error_kind is None else "schema",
            attempt=1, payload=None, payload_kind="batch_result", batch_id=batch_id,
            input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens, cache_write_tokens=usage.cache_write_tokens,
            cost_usd=usage.cost_usd, error=error_text,
        )
    client.cache.save_batch(batch_id, client.backend_id, list(requests), "collected")
    return stored
