"""The Dockerfile and docker-compose.yml run commands that exist and start, with settings that
validate. No docker engine is needed: each command is run against this checkout, with the
image's environment, and ``convlens`` mapped to ``python -m app.cli``."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from app.config import Settings
from tests.platform.containers import (
    ROOT,
    Stage,
    base_env,
    build_context_files,
    dockerignore_patterns,
    free_port,
    is_ignored,
    load_compose,
    local_command,
    parse_dockerfile,
    service_environment,
    stop,
    wait_for,
)

#: Celery's start-up line, "celery@<host> ready." (as text or inside a JSON log line).
CELERY_READY = re.compile(r"celery@\S+ ready")
FINAL_STAGES = ("api", "worker", "worker-gpu")
OUR_IMAGES = ("convlens-api", "convlens-worker")


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return parse_dockerfile(ROOT / "Dockerfile")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose(ROOT / "docker-compose.yml")


def convlens_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The compose services that run a convlens image (not postgres or redis)."""
    return {
        name: service
        for name, service in compose["services"].items()
        if str(service.get("image", "")).startswith(OUR_IMAGES)
    }


def service_command(service: dict[str, Any], stages: dict[str, Stage]) -> list[str]:
    """The compose ``command:``, or the image's CMD when the service does not override it."""
    command = service.get("command")
    if command is None:
        command = stages[service["build"]["target"]].cmd
    assert isinstance(command, list), f"use the exec form (a list) for command: {command!r}"
    return [str(part) for part in command]


def run_help(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``<command> --help``: click parses every option first, so unknown options fail here."""
    return subprocess.run(
        local_command([*argv, "--help"]),
        cwd=ROOT,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


# -- the Dockerfile ----------------------------------------------------------------------------


def test_images_are_multi_stage_non_root_and_the_api_has_a_healthcheck(
    stages: dict[str, Stage],
) -> None:
    for name in FINAL_STAGES:
        assert name in stages, f"missing build target {name!r}"
        user = stages[name].user
        assert user not in (None, "root", "0"), f"{name} runs as {user!r}"
        assert stages[name].cmd and stages[name].cmd[0] == "convlens"
    assert stages["api"].healthcheck() == ["python", "-m", "app.observability.healthcheck"]
    assert stages["api"].cmd == ["convlens", "serve"]
    assert stages["worker"].cmd[:2] == ["convlens", "worker"]


def _requirements_from_run(stage: Stage, tmp_path: Path) -> list[str]:
    """Run the stage's own ``python -c "import tomllib ..." > file`` commands through ``sh``,
    against this pyproject.toml, and read the requirement lists they write."""
    found: list[str] = []
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for run in stage.all("RUN"):
        for piece in run.arguments.split("&&"):
            piece = piece.strip()
            if not (piece.startswith("python -c") and "tomllib" in piece and ">" in piece):
                continue
            command, _, target = piece.rpartition(">")
            output = tmp_path / Path(target.strip()).name
            shell = f"{shlex.quote(sys.executable)} {command.strip()[len('python '):]} > {output}"
            subprocess.run(["/bin/sh", "-c", shell], cwd=tmp_path, check=True, timeout=60)
            found.extend(line for line in output.read_text().splitlines() if line.strip())
    return found


def test_the_api_image_installs_no_tensorflow_and_the_worker_image_does(
    stages: dict[str, Stage], tmp_path: Path
) -> None:
    api_requirements = _requirements_from_run(stages["deps-api"], tmp_path)
    worker_requirements = _requirements_from_run(stages["deps-worker"], tmp_path)
    assert any(r.startswith("fastapi") for r in api_requirements), api_requirements
    assert not any(
        r.lower().startswith(("tensorflow", "keras", "tf_keras")) for r in api_requirements
    )
    new_in_worker = set(worker_requirements) - set(api_requirements)
    assert any(r.startswith("tensorflow") for r in new_in_worker), worker_requirements
    assert any(r.startswith("keras") for r in new_in_worker), worker_requirements
    copied = " ".join(i.arguments for i in stages["api"].all("COPY"))
    assert "deps-api" in copied and "deps-worker" not in copied


def test_every_copied_path_is_in_the_build_context(stages: dict[str, Stage]) -> None:
    patterns = dockerignore_patterns(ROOT / ".dockerignore")
    context = build_context_files()
    for stage in stages.values():
        for instruction in stage.all("COPY"):
            if "--from=" in instruction.arguments:
                continue
            *sources, _destination = instruction.arguments.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                assert not is_ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
                assert any(f == source or f.startswith(source + "/") for f in context), source
    assert not any(f.startswith((".venv/", "tests/", ".git/", "convlens-data/")) for f in context)


def test_the_build_context_keeps_migrations_next_to_the_package(
    stages: dict[str, Stage], tmp_path: Path
) -> None:
    """Copy what the image gets to <tmp>/srv/convlens, run the Dockerfile's own layout check and
    ``convlens db upgrade`` from there (with nothing else on the path)."""
    image_root = tmp_path / "srv" / "convlens"
    for relative in build_context_files():
        target = image_root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, target)
    checks = [
        piece.strip()
        for run in stages["api"].all("RUN")
        for piece in run.arguments.split("&&")
        if "MIGRATIONS_DIR" in piece
    ]
    assert checks, "the api stage should check where migrations are"
    env = {**base_env(), "PYTHONPATH": str(image_root)}
    for check in checks:
        result = subprocess.run(
            ["/bin/sh", "-c", check.replace("python ", f"{sys.executable} ", 1)],
            cwd=image_root,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
    located = subprocess.run(
        [
            sys.executable,
            "-c",
            "import app, app.db; print(app.__file__); print(app.db.MIGRATIONS_DIR)",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert located == [str(image_root / "app" / "__init__.py"), str(image_root / "migrations")]
    database = tmp_path / "image.db"
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "db", "upgrade"],
        cwd=tmp_path,
        env={
            **env,
            "CONVLENS_DATABASE_URL": f"sqlite:///{database}",
            "CONVLENS_DATA_DIR": str(tmp_path / "data"),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "database at" in result.stdout and database.stat().st_size > 0


# -- compose: environment ------------------------------------------------------------------------


def test_compose_has_the_production_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "api", "worker", "worker-gpu"} <= set(services)
    assert services["migrate"]["command"] == ["convlens", "db", "upgrade"]
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert (
        services["worker"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    )
    gpu = services["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "profiles" not in services["worker"], "the CPU worker runs by default"
    for name in ("api", "worker", "worker-gpu"):
        assert "convlens-data:/var/lib/convlens" in services[name]["volumes"], name


def _settings_from(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in [k for k in os.environ if k.startswith("CONVLENS_")]:
        monkeypatch.delenv(key)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    return Settings()


def test_compose_and_image_environment_match_the_settings_fields(
    compose: dict[str, Any], stages: dict[str, Stage], monkeypatch: pytest.MonkeyPatch
) -> None:
    fields = {f"CONVLENS_{name.upper()}" for name in Settings.model_fields}
    services = convlens_services(compose)
    assert set(services) >= {"migrate", "api", "worker", "worker-gpu"}
    for name, service in services.items():
        image_env = stages[service["build"]["target"]].env()
        environment = {
            **{k: v for k, v in image_env.items() if k.startswith("CONVLENS_")},
            **service_environment(service),
        }
        unknown = {key for key in environment if key.startswith("CONVLENS_")} - fields
        assert not unknown, f"{name}: not settings fields: {sorted(unknown)}"
        try:
            settings = _settings_from(
                {k: v for k, v in environment.items() if k.startswith("CONVLENS_")}, monkeypatch
            )
        except ValidationError as exc:  # pragma: no cover - the assertion message is the point
            raise AssertionError(f"{name}: {exc}") from exc
        assert settings.database_url.startswith("postgresql+psycopg://"), name
        assert settings.executor == "celery", name
        assert settings.broker_url == "redis://redis:6379/0", name
        assert settings.auth_mode == "api_key", name
        assert settings.auto_migrate is False, f"{name}: migrations belong to the migrate service"
        assert settings.log_json is True
    api = _settings_from(
        {k: v for k, v in service_environment(services["api"]).items()}, monkeypatch
    )
    assert api.host == "0.0.0.0" and api.port == 8000


def test_a_wrong_value_in_the_environment_would_be_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: a typo in a value is a validation error."""
    with pytest.raises(ValidationError):
        _settings_from({"CONVLENS_EXECUTOR": "celry"}, monkeypatch)


# -- the commands exist ---------------------------------------------------------------------------


def all_commands(stages: dict[str, Stage], compose: dict[str, Any]) -> list[tuple[str, list[str]]]:
    found: list[tuple[str, list[str]]] = []
    for name in FINAL_STAGES:
        stage = stages[name]
        for label, command in (
            ("CMD", stage.cmd),
            ("ENTRYPOINT", stage.entrypoint),
            ("HEALTHCHECK", stage.healthcheck()),
        ):
            if command:
                found.append((f"Dockerfile {name} {label}", command))
    for name, service in convlens_services(compose).items():
        found.append((f"compose {name} command", service_command(service, stages)))
        test = (service.get("healthcheck") or {}).get("test")
        if test:
            assert test[0] == "CMD", test
            found.append((f"compose {name} healthcheck", test[1:]))
    return found


def test_every_convlens_command_exists_with_its_options(
    stages: dict[str, Stage], compose: dict[str, Any]
) -> None:
    commands = all_commands(stages, compose)
    convlens_commands = [(label, argv) for label, argv in commands if argv[0] == "convlens"]
    assert {tuple(argv[:2]) for _, argv in convlens_commands} >= {
        ("convlens", "serve"),
        ("convlens", "worker"),
        ("convlens", "db"),
    }
    for label, argv in convlens_commands:
        result = run_help(argv)
        assert result.returncode == 0, f"{label}: {argv}: {result.stdout}{result.stderr}"
        assert "Usage" in result.stdout, f"{label}: {result.stdout}"
    python_commands = [argv for _, argv in commands if argv[0] == "python"]
    assert python_commands, "the health check is a python command"
    for argv in python_commands:
        module = argv[argv.index("-m") + 1]
        found = subprocess.run(
            [sys.executable, "-c", f"import importlib.util as u; assert u.find_spec({module!r})"],
            cwd=ROOT,
            env=base_env(),
        )
        assert found.returncode == 0, f"module {module} not found"


def test_the_migrate_command_upgrades_sqlite(compose: dict[str, Any], tmp_path: Path) -> None:
    argv = compose["services"]["migrate"]["command"]
    database = tmp_path / "db.sqlite"
    env = base_env(CONVLENS_DATABASE_URL=f"sqlite:///{database}", CONVLENS_DATA_DIR=str(tmp_path))
    for _ in range(2):  # idempotent: a redeploy runs it again
        result = subprocess.run(
            local_command(argv), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stdout + result.stderr
    current = subprocess.run(
        local_command(["convlens", "db", "current"]),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert current.returncode == 0 and "current=" in current.stdout, current.stdout + current.stderr


@pytest.mark.postgres
def test_the_migrate_command_upgrades_postgresql(
    compose: dict[str, Any], tmp_path: Path, postgres_url: str
) -> None:
    from sqlalchemy import create_engine, inspect

    from app.db import dispose_engines

    argv = compose["services"]["migrate"]["command"]
    env = base_env(CONVLENS_DATABASE_URL=postgres_url, CONVLENS_DATA_DIR=str(tmp_path))
    result = subprocess.run(
        local_command(argv), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    engine = create_engine(postgres_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
        dispose_engines()
    assert {
        "tenants",
        "api_keys",
        "architectures",
        "jobs",
        "job_events",
        "alembic_version",
    } <= tables


def test_the_api_command_serves_and_the_healthcheck_sees_it(
    compose: dict[str, Any], stages: dict[str, Stage], tmp_path: Path
) -> None:
    """The compose api command (0.0.0.0 with API keys, as in the image) answers /healthz, the
    HEALTHCHECK command exits 0 while it runs and 1 once it is gone."""
    port = free_port()
    argv = [
        part if part != "8000" else str(port)
        for part in service_command(compose["services"]["api"], stages)
    ]
    image_env = {k: v for k, v in stages["api"].env().items() if k.startswith("CONVLENS_")}
    env = base_env(
        **{
            **image_env,
            "CONVLENS_DATA_DIR": str(tmp_path / "data"),
            "CONVLENS_PORT": str(port),
            "CONVLENS_LOCAL_WORKERS": "0",
        }
    )
    process = subprocess.Popen(
        local_command(argv), cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    healthcheck = local_command(stages["api"].healthcheck() or [])
    try:
        wait_for(f"http://127.0.0.1:{port}/healthz", process=process)
        refused = httpx.get(
            f"http://127.0.0.1:{port}/v1/analyses", headers={"X-Request-ID": "image-check-1"}
        )
        assert refused.status_code == 401  # API keys are required in the image
        assert refused.headers["x-request-id"] == "image-check-1"
        result = subprocess.run(healthcheck, env=env, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        stop(process)
    assert process.stdout is not None
    output = process.stdout.read().decode(errors="replace")
    logged = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    access = [r for r in logged if r.get("request_id") == "image-check-1"]
    assert access and access[0]["status"] == 401, (
        f"no JSON access line with the request id: {output[-2000:]}"
    )
    result = subprocess.run(healthcheck, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1, result.stdout


@pytest.mark.redis
def test_the_worker_command_starts(
    compose: dict[str, Any], stages: dict[str, Stage], tmp_path: Path
) -> None:
    """``convlens worker`` as compose runs it starts against Redis and keeps running."""
    import time

    from tests.conftest import REDIS_URL

    database = tmp_path / "worker.db"
    env = base_env(
        CONVLENS_DATABASE_URL=f"sqlite:///{database}",
        CONVLENS_DATA_DIR=str(tmp_path),
        CONVLENS_EXECUTOR="celery",
        CONVLENS_BROKER_URL=REDIS_URL,
        CONVLENS_LOG_JSON="true",
    )
    subprocess.run(
        local_command(["convlens", "db", "upgrade"]),
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    argv = service_command(compose["services"]["worker"], stages)
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            local_command(argv), cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and process.poll() is None:
                if CELERY_READY.search(log_path.read_text(errors="replace")):
                    break
                time.sleep(0.5)
            output = log_path.read_text(errors="replace")
            assert process.poll() is None, (
                f"the worker exited with {process.returncode}: {output[-3000:]}"
            )
            assert CELERY_READY.search(output), output[-3000:]
        finally:
            stop(process, timeout=30)
