"""Teacher client throughput against a local server with a set latency and rate limit.

The server is MockTeacherServer (tests/servers/mock_teacher.py), run in a process of its
own (so that it does not compete with the client for the GIL): it speaks the Anthropic
Messages API and fills the tool schema mechanically after `--latency` seconds; it is a
stand-in for a model, so this measures the client (instructor + SDK + cache + limits +
retries + log), not a model. The production backend (`anthropic`: AsyncAnthropic through
instructor's tool mode) is pointed at it with `teacher.base_url`.

For each scenario: requests/s achieved versus the theoretical maximum
min(concurrency / latency, rate limit), the ratio, 429s the server sent, and a re-run of
the same requests that the response cache answers (nothing sent).

    .venv/bin/python bench/teacher/run.py [--requests 120] [--latency 0.1] [--limit-rps 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from curate.config import parse_config  # noqa: E402
from curate.services.teacher import prompts  # noqa: E402
from curate.services.teacher.factory import open_teacher  # noqa: E402
from curate.services.teacher.request import TeacherRequest  # noqa: E402
from schemas.tasks import output_model  # noqa: E402

LABELS = ["access-control", "incident-response", "data-protection", "asset-management", "business-continuity"]


def requests_for(config: Any, n: int) -> list[TeacherRequest]:
    model = output_model(config.task)
    system = prompts.system_prompt(config.task)
    instruction = prompts.instruction(config.task)
    samples = config.teacher.samples
    return [
        TeacherRequest(
            chunk_id=f"chunk{i // samples:04d}", system=system,
            chunk_text=f"Section {i // samples}. Passwords must be at least 14 characters long; MFA is mandatory "
            "for remote access and every administrative interface. Accounts lock after 10 failed attempts.",
            instruction=instruction, response_model=model, sample_index=i % samples,
        )
        for i in range(n)
    ]


class ServerProcess:
    """MockTeacherServer in a process of its own, so that it does not share the GIL with the client."""

    def __init__(self, latency: float, rps: float | None):
        command = [sys.executable, "-m", "tests.servers.mock_teacher", "--latency", str(latency), "--window", "1"]
        if rps:
            command += ["--rpm", str(rps * 60)]
        self.process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True,
                                        env={**os.environ, "PYTHONPATH": str(REPO)})
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()

    def stats(self) -> dict[str, int]:
        return json.loads(urllib.request.urlopen(f"{self.url}/stats").read())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def scenario(name: str, *, n: int, latency: float, concurrency: int, server_rps: float | None,
             client_rps: float | None, client_limiter: str = "aiolimiter", rerun: bool = False) -> dict[str, Any]:
    server = ServerProcess(latency, server_rps)
    try:
        with tempfile.TemporaryDirectory() as run_dir:
            config = parse_config({
                "run_dir": run_dir,
                "task": {"type": "classification", "instruction": "Which policy area?", "labels": LABELS},
                "teacher": {
                    "backend": "anthropic", "base_url": server.url, "samples": 3,
                    "max_concurrency": concurrency, "max_retries": 8, "retry_base_s": 0.05,
                    "requests_per_minute": client_rps * 60 if client_rps and client_limiter == "aiolimiter" else None,
                },
            })
            limiter = None
            if client_rps and client_limiter == "sliding-window":
                from curate.run.limits import RateLimiter  # the scale engineer's limiter, passed in

                limiter = RateLimiter(requests_per_minute=client_rps * 60)
            teacher = open_teacher(config, run_dir, limiter=limiter)
            requests = requests_for(config, n)
            started = time.perf_counter()
            answers = teacher.ask_many(requests)
            seconds = time.perf_counter() - started
            stats = server.stats()
            row: dict[str, Any] = {"scenario": name, "concurrency": concurrency, "latency_s": latency,
                   "limit_rps": server_rps, "requests": n, "ok": sum(a.ok for a in answers),
                   "seconds": seconds, "rps": n / seconds, "rate_limited": stats["rate_limited"],
                   "sent": stats["received"]}
            limits = [concurrency / latency] + ([server_rps] if server_rps else []) + ([client_rps] if client_rps else [])
            row["theoretical_rps"] = min(limits)
            row["ratio"] = (n / seconds) / min(limits)
            if rerun:
                started = time.perf_counter()
                again = teacher.ask_many(requests)
                rerun_seconds = time.perf_counter() - started
                row["rerun_seconds"] = rerun_seconds
                row["rerun_rps"] = n / rerun_seconds
                row["rerun_sent"] = server.stats()["received"] - stats["received"]
                row["rerun_cached"] = sum(a.cached for a in again)
            teacher.close()
            return row
    finally:
        server.stop()


def warm_up(latency: float) -> None:
    """One untimed request: the first one pays for lazy imports in the SDK and instructor."""
    scenario("warm-up", n=1, latency=latency, concurrency=1, server_rps=None, client_rps=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=120)
    parser.add_argument("--latency", type=float, default=0.1, help="Server seconds per answer")
    parser.add_argument("--limit-rps", type=float, default=20.0, help="Server rate limit (requests/s)")
    args = parser.parse_args()
    os.environ.setdefault("ANTHROPIC_API_KEY", "bench-not-a-real-key")
    n, latency, limit = args.requests, args.latency, args.limit_rps
    warm_up(latency)
    rows = [
        scenario("concurrency 1", n=n // 4, latency=latency, concurrency=1, server_rps=None, client_rps=None),
        scenario("concurrency 8", n=n, latency=latency, concurrency=8, server_rps=None, client_rps=None),
        scenario("concurrency 32 (+ cached re-run)", n=n, latency=latency, concurrency=32, server_rps=None,
                 client_rps=None, rerun=True),
        scenario("concurrency 32, server limit, aiolimiter (default)", n=n, latency=latency, concurrency=32,
                 server_rps=limit, client_rps=limit),
        scenario("concurrency 32, server limit, sliding-window limiter", n=n, latency=latency, concurrency=32,
                 server_rps=limit, client_rps=limit, client_limiter="sliding-window"),
        scenario("concurrency 32, server limit, no client limiter", n=n, latency=latency, concurrency=32,
                 server_rps=limit, client_rps=None),
    ]
    print(f"teacher client throughput — {platform.node()} {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}; server latency {latency}s")
    header = f"{'scenario':<52} {'reqs':>5} {'ok':>5} {'secs':>6} {'req/s':>7} {'theory':>7} {'ratio':>6} {'429s':>5} {'sent':>5}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['scenario']:<52} {row['requests']:>5} {row['ok']:>5} {row['seconds']:>6.2f} {row['rps']:>7.1f} "
              f"{row['theoretical_rps']:>7.1f} {row['ratio']:>6.2f} {row['rate_limited']:>5} {row['sent']:>5}")
    cached = next(row for row in rows if "rerun_rps" in row)
    print()
    print(f"{'re-run of the same requests':<50} {'first run':>12} {'re-run':>12} {'speed-up':>9}")
    print(f"{'  requests/s':<50} {cached['rps']:>12.1f} {cached['rerun_rps']:>12.1f} "
          f"{cached['rerun_rps'] / cached['rps']:>8.1f}x")
    print(f"{'  requests sent to the server':<50} {cached['sent']:>12} {cached['rerun_sent']:>12}")
    print(f"{'  answers from the response cache':<50} {0:>12} {cached['rerun_cached']:>12}")


if __name__ == "__main__":
    main()
