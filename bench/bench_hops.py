"""Benchmark: handing a unit of work from the event loop to a thread and back.

Every request's database work is one hop (``app.api.deps.RequestScope.run``); an analysis's
hop also waits with the sync window's timer (``run_within``). This measures, on uvloop as
``convlens serve`` runs, the CPU and wall time per hop of a trivial unit (a 200-step loop),
16 callers at once on 4 threads:

- ``anyio``: ``anyio.to_thread.run_sync`` with a capacity limiter (what convlens used);
- ``units``: :class:`app.api.units.UnitThreads` (the standard library's thread pool);
- ``anyio+window`` and ``units+window``: the same, awaited through ``asyncio.wait`` with a
  timeout, as ``run_within`` waits.

Medians of five rounds of 20,000 hops each, measured in this run, with the ratios.

Run::

    python -m bench.bench_hops
    python -m bench.bench_hops --quick      # 5,000 hops, three rounds
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio  # noqa: E402
import anyio.to_thread  # noqa: E402
import uvloop  # noqa: E402

from app.api.units import UnitThreads  # noqa: E402

THREADS, CALLERS = 4, 16


def _unit() -> int:
    total = 0
    for step in range(200):
        total += step
    return total


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _windowed(start: Callable[[], asyncio.Future[Any]]) -> Any:
    task = start()
    while not task.done():
        await asyncio.wait({task}, timeout=5.0)
    return await task


async def _measure(kind: str, hops: int, rounds: int) -> tuple[float, float]:
    limiter = anyio.CapacityLimiter(THREADS)
    units = UnitThreads(THREADS)
    hop: Callable[[], Awaitable[Any]] = {
        "anyio": lambda: anyio.to_thread.run_sync(_unit, limiter=limiter),
        "units": lambda: units.run(_unit),
        "anyio+window": lambda: _windowed(
            lambda: asyncio.ensure_future(anyio.to_thread.run_sync(_unit, limiter=limiter))),
        "units+window": lambda: _windowed(lambda: units.submit(_unit)[1]),
    }[kind]

    async def caller(count: int) -> None:
        for _ in range(count):
            await hop()

    cpu_per_hop, wall_per_hop = [], []
    try:
        await asyncio.gather(*(caller(100) for _ in range(CALLERS)))  # warm: threads started
        for _ in range(rounds):
            cpu, wall = _cpu(), time.perf_counter()
            await asyncio.gather(*(caller(hops // CALLERS) for _ in range(CALLERS)))
            cpu_per_hop.append((_cpu() - cpu) / hops * 1e6)
            wall_per_hop.append((time.perf_counter() - wall) / hops * 1e6)
    finally:
        units.shutdown()
    return statistics.median(cpu_per_hop), statistics.median(wall_per_hop)


def main(argv: list[str] | None = None) -> dict[str, tuple[float, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hops", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="5,000 hops, three rounds")
    args = parser.parse_args(argv)
    if args.quick:
        args.hops, args.rounds = 5_000, 3
    figures = {}
    for kind in ("anyio", "units", "anyio+window", "units+window"):
        figures[kind] = uvloop.run(_measure(kind, args.hops, args.rounds))
        cpu, wall = figures[kind]
        print(f"{kind:14s} CPU {cpu:6.1f} us per hop, wall {wall:6.1f} us per hop")
    for plain in ("", "+window"):
        before, after = figures["anyio" + plain][0], figures["units" + plain][0]
        print(f"CPU per hop ratio, anyio{plain} / units{plain}: {before / after:.2f}x")
    return figures


if __name__ == "__main__":
    main()
