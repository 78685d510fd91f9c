"""Readers for the Dockerfile, docker-compose.yml and .dockerignore (no docker engine needed).

Example::

    stages = parse_dockerfile(ROOT / "Dockerfile")
    stages["api"].cmd          # ['convlens', 'serve']
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Instruction:
    keyword: str
    arguments: str

    def command(self) -> list[str]:
        """The exec form (JSON list) or the shell form as ``sh -c``."""
        text = self.arguments.strip()
        if text.startswith("["):
            return [str(part) for part in json.loads(text)]
        return ["/bin/sh", "-c", text]


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    @property
    def cmd(self) -> list[str] | None:
        found = self.all("CMD")
        return found[-1].command() if found else None

    @property
    def entrypoint(self) -> list[str] | None:
        found = self.all("ENTRYPOINT")
        return found[-1].command() if found else None

    @property
    def user(self) -> str | None:
        found = self.all("USER")
        return found[-1].arguments.strip() if found else None

    def healthcheck(self) -> list[str] | None:
        """The HEALTHCHECK's command (options such as --interval stripped)."""
        found = self.all("HEALTHCHECK")
        if not found:
            return None
        text = found[-1].arguments
        _, _, command = text.partition("CMD")
        return Instruction("CMD", command).command()

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for token in shlex.split(instruction.arguments):
                key, _, value = token.partition("=")
                values[key] = value
        return values


def parse_dockerfile(path: Path) -> dict[str, Stage]:
    """Stages by name (``AS name``), each with its instructions, continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.rstrip()
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in logical:
        keyword, _, arguments = line.strip().partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", arguments.strip(), re.IGNORECASE)
            assert match, line
            base, name = match.group(1), match.group(2) or f"stage{len(stages)}"
            inherited = stages.get(base)
            current = Stage(name, base, list(inherited.instructions) if inherited else [])
            stages[name] = current
        elif current is not None:
            current.instructions.append(Instruction(keyword, arguments))
    return stages


# -- compose ------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolate(value: Any, environ: dict[str, str] | None = None) -> Any:
    """Compose-style ``${NAME:-default}`` interpolation with an empty environment by default."""
    environ = environ or {}
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: environ.get(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, dict):
        return {k: interpolate(v, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, environ) for v in value]
    return value


def load_compose(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    return interpolate(document)


def service_environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {str(k): "" if v is None else str(v) for k, v in environment.items()}


# -- .dockerignore --------------------------------------------------------------------------


def dockerignore_patterns(path: Path) -> list[str]:
    return [
        line.strip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def is_ignored(relative: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes; a match on a parent
    directory excludes everything below it; ``**`` matches any number of directories."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.strip("/")
        regex = _glob_regex(body)
        if any(regex.fullmatch(candidate) for candidate in candidates):
            ignored = not negate
    return ignored


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out += "(?:.*/)?"
            index += 3
        elif pattern.startswith("**", index):
            out += ".*"
            index += 2
        else:
            chunk = pattern[index]
            out += "[^/]*" if chunk == "*" else "[^/]" if chunk == "?" else re.escape(chunk)
            index += 1
    return re.compile(out)


def build_context_files(root: Path = ROOT) -> list[str]:
    """Files git knows (tracked or not ignored) that survive .dockerignore."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    patterns = dockerignore_patterns(root / ".dockerignore")
    return sorted(f for f in listed if (root / f).is_file() and not is_ignored(f, patterns))


# -- running the commands ------------------------------------------------------------------


def local_command(argv: list[str]) -> list[str]:
    """Map an image command onto this checkout: ``convlens`` is ``python -m app.cli``,
    ``python`` is this interpreter."""
    head, *rest = argv
    if head == "convlens":
        return [sys.executable, "-m", "app.cli", *rest]
    if head in ("python", "python3"):
        return [sys.executable, *rest]
    return argv


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(**overrides: str) -> dict[str, str]:
    """This environment without CONVLENS_* leftovers, plus the checkout on PYTHONPATH."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CONVLENS_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update({"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"})
    env.update(overrides)
    return env


def wait_for(url: str, timeout: float = 60.0, process: subprocess.Popen[Any] | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(
                f"the process exited with {process.returncode} before {url} answered"
            )
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer 200 within {timeout} s")


def stop(process: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


__all__ = [
    "ROOT",
    "Stage",
    "base_env",
    "build_context_files",
    "dockerignore_patterns",
    "free_port",
    "interpolate",
    "is_ignored",
    "load_compose",
    "local_command",
    "parse_dockerfile",
    "service_environment",
    "stop",
    "wait_for",
]
