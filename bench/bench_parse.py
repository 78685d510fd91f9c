"""Benchmark: the strict JSON parser (orjson) against the same rules on the standard library.

convlens parses every body, form field and archive member with
``app.ingest.jsonparse.parse_json_bytes``. It enforces size, element count, nesting depth,
number length, 64-bit integers, NaN/Infinity, UTF-8, lone surrogates and duplicate keys.
``stdlib_strict`` below is the parser convlens used before (``json.loads`` with hooks for
each rule plus a bracket scan for depth): the same strictness on the standard library.

Figures, each measured in this run (median CPU time of N calls, in process):

- per document (seed Example 3, ResNet50, NASNetMobile, InceptionResNetV2 as Keras 3 JSON):
  stdlib time, orjson time, the ratio, and the time of the gate on the parsed document
  (``gate_architecture``: allowlist, sanitised copy and static limits in one walk);
- a 30 MB body of ``{}`` elements under one key: how long each takes to refuse it, and the
  memory each allocates doing so (tracemalloc peak);
- per Keras Applications model, in both formats (Keras 3 and tf.keras 2 JSON): the pipeline's
  prepare steps (the strict parse of the body, the gate, the canonical form and its sha256)
  against the engine on the gated config, and their ratio. The goal for ResNet50 over HTTP
  (at most 2x the engine) leaves 1x beside the engine for prepare, the store and HTTP together.

Both parsers are checked to return equal documents on every input before timing.

Run::

    python -m bench.bench_parse            # 25 calls per document
    python -m bench.bench_parse --quick    # 5 calls per document
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.config import Settings  # noqa: E402
from app.errors import DomainError, InvalidJSON  # noqa: E402
from app.ingest.jsonparse import parse_json_bytes  # noqa: E402
from app.ingest.service import canonical_json_sha256  # noqa: E402
from app.security import gate_architecture  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _depth(data: bytes) -> int:
    import numpy as np

    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    codes = np.frombuffer(brackets, dtype=np.uint8)
    return int(np.cumsum(np.where((codes == 91) | (codes == 123), 1, -1)).max())


def stdlib_strict(data: bytes, settings: Settings) -> Any:
    """The previous parser: json.loads with a hook per rule (same limits, same refusals)."""
    if len(data) > settings.max_json_bytes:
        raise InvalidJSON("too large")
    text = data.decode("utf-8")
    if _depth(data) > settings.max_json_depth:
        raise InvalidJSON("too deep", code="json_limit_exceeded")
    limit = settings.max_json_number_digits
    elements = [0]

    def number(token: str, convert: Callable[[str], Any]) -> Any:
        if len(token) > limit:
            raise InvalidJSON("number too long", code="json_limit_exceeded")
        value = convert(token)
        if isinstance(value, int) and not -(2**63) <= value <= 2**64 - 1:
            raise InvalidJSON("integer beyond 64 bits", code="json_limit_exceeded")
        return value

    def constant(token: str) -> Any:
        raise InvalidJSON(f"{token} is not JSON", code="json_limit_exceeded")

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        elements[0] += len(items) + 1
        if elements[0] > settings.max_json_elements:
            raise InvalidJSON("too many elements", code="json_limit_exceeded")
        result = dict(items)
        if len(result) != len(items):
            raise InvalidJSON("duplicate key", code="json_limit_exceeded")
        for value in result.values():
            if isinstance(value, str):
                value.encode("utf-8")  # lone surrogates raise
        return result

    return json.loads(text, parse_int=lambda t: number(t, int),
                      parse_float=lambda t: number(t, float), parse_constant=constant,
                      object_pairs_hook=pairs)


def _median_ms(function: Callable[[], Any], calls: int) -> float:
    """Median CPU time of this process per call (single-threaded work: unlike wall time it
    does not count the time other processes of a shared machine take the core)."""
    times = []
    for _ in range(calls):
        started = time.process_time()
        function()
        times.append(time.process_time() - started)
    return statistics.median(times) * 1000


def _refusal(function: Callable[[], Any]) -> tuple[float, float, str]:
    """(milliseconds, peak MiB allocated, code) to refuse a document."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        function()
        code = "accepted"
    except (DomainError, ValueError, MemoryError) as exc:
        code = getattr(exc, "code", type(exc).__name__)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed * 1000, peak / 2**20, code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_parse")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    calls = 5 if args.quick else 25
    settings = Settings()
    documents = {
        "seed example3": (FIXTURES / "seed" / "example3.json").read_bytes(),
        **{
            name: gzip.decompress((FIXTURES / "applications" / f"{name}.json.gz").read_bytes())
            for name in ("resnet50", "nasnetmobile", "inceptionresnetv2")
        },
    }
    print(f"strict JSON parsing, median CPU time of {calls} calls, in process")
    print(f"{'document':22} {'bytes':>10} {'stdlib ms':>10} {'orjson ms':>10} {'ratio':>7} {'gate ms':>8}")
    ratios = []
    for name, data in documents.items():
        parsed = parse_json_bytes(data, settings)
        assert parsed == stdlib_strict(data, settings), name
        slow = _median_ms(lambda data=data: stdlib_strict(data, settings), calls)
        fast = _median_ms(lambda data=data: parse_json_bytes(data, settings), calls)
        gate = _median_ms(lambda parsed=parsed: gate_architecture(parsed, settings), calls)
        ratios.append(slow / fast)
        print(f"{name:22} {len(data):>10,} {slow:>10.2f} {fast:>10.2f} {slow / fast:>6.1f}x {gate:>8.2f}")
    print(f"parser speed-up (stdlib / orjson), median over documents: {statistics.median(ratios):.1f}x")

    bomb = b'{"architecture": {}, "unknown": [' + b"{}," * 10_000_000 + b"{}]}"
    big = Settings(max_json_bytes=64 * 2**20)
    for label, function in (("stdlib", lambda: stdlib_strict(bomb, big)),
                            ("orjson", lambda: parse_json_bytes(bomb, big))):
        elapsed, peak, code = _refusal(function)
        print(f"{len(bomb) / 2**20:.0f} MB of {{}} elements, {label}: refused in {elapsed:,.0f} ms, "
              f"{peak:,.1f} MiB allocated ({code})")
    prepare_against_engine(settings, 5 if args.quick else 15, quick=args.quick)
    return 0


def prepare_against_engine(settings: Settings, calls: int, *, quick: bool = False) -> dict[str, float]:
    """Prepare's steps against the engine per Applications model and format; returns the median
    ratio per format. CPU medians of ``calls`` runs each, the cycle collector paused as the
    service pauses it (``app.gcpause``)."""
    from app.analysis import analyze
    from app.gcpause import no_cycle_collection

    def median_ms(function: Callable[[], Any]) -> float:
        function()
        with no_cycle_collection():
            return _median_ms(function, calls)

    names = sorted(path.name.removesuffix(".json.gz") for path in (FIXTURES / "applications").glob("*.json.gz")
                   if ".tfkeras." not in path.name)
    if quick:
        names = [name for name in names if name in ("resnet50", "mobilenetv2", "densenet121")]
    print(f"\nprepare (strict parse of the body, gate, canonical sha256) against the engine, median CPU ms "
          f"of {calls} calls")
    print(f"{'model':18} {'format':9} {'parse':>7} {'gate':>7} {'hash':>6} {'engine':>7} {'prepare/engine':>15}")
    ratios: dict[str, list[float]] = {"Keras 3": [], "tf.keras": []}
    for name in names:
        for label, file in (("Keras 3", f"{name}.json.gz"), ("tf.keras", f"{name}.tfkeras.json.gz")):
            path = FIXTURES / "applications" / file
            if not path.exists():
                continue
            config = json.loads(gzip.decompress(path.read_bytes()))
            body = json.dumps({"architecture": config}).encode()
            gated = gate_architecture(config, settings)
            parse = median_ms(lambda body=body: parse_json_bytes(body, settings))
            gate = median_ms(lambda config=config: gate_architecture(config, settings))
            digest = median_ms(lambda gated=gated: canonical_json_sha256(gated))
            engine = median_ms(lambda gated=gated: analyze(gated))
            ratio = (parse + gate + digest) / engine
            ratios[label].append(ratio)
            print(f"{name:18} {label:9} {parse:>7.2f} {gate:>7.2f} {digest:>6.2f} {engine:>7.2f} {ratio:>14.2f}x")
    medians = {label: statistics.median(values) for label, values in ratios.items() if values}
    for label, value in medians.items():
        print(f"prepare / engine ratio, median over {len(ratios[label])} {label} documents: {value:.2f}x "
              f"(range {min(ratios[label]):.2f}x-{max(ratios[label]):.2f}x; ResNet50 over HTTP at <= 2x the "
              "engine leaves 1x for prepare, the store and HTTP together)")
    return medians


if __name__ == "__main__":
    raise SystemExit(main())
