"""Damaged and altered model files: every upload gets a report or a refusal with a stable code.

The seed's real ``.keras`` archives and legacy ``.h5`` files, changed the ways files get
damaged or tampered with: bytes overwritten, cut out or inserted anywhere (headers, the zip
directory, HDF5 metadata, weights); a member of the archive corrupted; values of the
archive's ``config.json`` replaced (sizes, strides, names, types). Each goes through what an
upload goes through in process (:func:`app.ingest.ingest_bytes`: format detection, the
archive and HDF5 checks in their child process, the gate; then the engine and the report
limits) and must end in a report or a :class:`~app.errors.DomainError` (a 4xx problem with a
stable code), never another exception (a 500). A fixed seed: the same files every run.
"""

from __future__ import annotations

import io
import json
import random
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from app.errors import DomainError
from app.ingest import ingest_bytes
from app.pipeline import analyse
from tests.conftest import make_settings
from tests.fixtures.load import FIXTURES_DIR

SEED = FIXTURES_DIR / "seed"
VALUES: list[Any] = [0, -1, 1, 3, 10**6, 10**12, 1e300, 1.5, True, None, "", "same", "a/b", [], {}, [0, 0],
                     [10**9, 1], {"class_name": "Lambda", "config": {}}]


def _damaged_bytes(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 4, 16])):
        at = rng.randrange(len(out))
        roll = rng.random()
        if roll < 0.5:
            out[at] = rng.randrange(256)
        elif roll < 0.7:
            del out[at:at + rng.randrange(1, 64)]
        elif roll < 0.85:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
        else:
            width = rng.choice([1, 2, 4, 8])
            out[at:at + width] = bytes([rng.choice([0x00, 0xFF, 0x7F, 0x80])]) * width
    return bytes(out)


def _places(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path under ``node`` (into lists too): the places a value can be replaced."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            found.append((*path, key))
            if isinstance(value, dict | list):
                found.extend(_places(value, (*path, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            if isinstance(value, dict | list):
                found.extend(_places(value, (*path, index)))
    return found


def _altered_config(text: bytes, rng: random.Random) -> bytes:
    """``config.json`` with one to three values replaced (a valid JSON document)."""
    config = json.loads(text)
    places = _places(config)
    for _ in range(rng.choice([1, 2, 3])):
        *parent_path, key = rng.choice(places)
        parent = config
        try:
            for step in parent_path:
                parent = parent[step]
            parent[key] = rng.choice(VALUES)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change replaced the container
    return json.dumps(config).encode()


def _altered_member(data: bytes, rng: random.Random) -> bytes:
    """The archive with one member changed: ``config.json``'s values, or any member's bytes."""
    source = zipfile.ZipFile(io.BytesIO(data))
    names = source.namelist()
    target = "config.json" if rng.random() < 0.7 else rng.choice(names)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for info in source.infolist():
            content = source.read(info)
            if info.filename == target:
                content = (_altered_config(content, rng) if target == "config.json"
                           else _damaged_bytes(content, rng))
            archive.writestr(info, content)
    return out.getvalue()


def _cases(kind: str, count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    files = [(SEED / f"example{number}.{kind}").read_bytes() for number in (1, 2, 3)]
    cases = []
    for _ in range(count):
        data = rng.choice(files)
        cases.append(_altered_member(data, rng) if kind == "keras" and rng.random() < 0.6
                     else _damaged_bytes(data, rng))
    return cases


@pytest.mark.parametrize(("kind", "count", "seed"), [("keras", 30, 20261201), ("h5", 12, 20261202)])
def test_damaged_or_altered_files_get_a_report_or_a_refusal(kind: str, count: int, seed: int,
                                                             tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    outcomes: Counter[str] = Counter()
    for index, data in enumerate(_cases(kind, count, seed)):
        try:
            ingested = ingest_bytes(data, filename=f"model.{kind}", settings=settings)
            report = analyse(ingested.config, None, ingested.name, settings)
        except DomainError as exc:
            assert exc.code, f"case {index}: a refusal without a code"
            outcomes[exc.code] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - the failure this test is for
            pytest.fail(f"{kind} case {index}: {type(exc).__name__}: {str(exc)[:300]}")
        assert "layers" in report and report["summary"]["total_params"] >= 0
        outcomes["report"] += 1
    # Both ends are reached: some files still analyse, and some are refused.
    assert outcomes["report"] > 0 and sum(outcomes.values()) - outcomes["report"] > 0, outcomes
