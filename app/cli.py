"""The ``convlens`` command line.

Examples::

    convlens serve                         # embedded defaults: SQLite in ./convlens-data, local workers
    convlens db upgrade                    # production: migrate PostgreSQL before starting
    convlens keys create --tenant acme     # prints a new API key once
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from app.config import Settings, get_settings

cli = typer.Typer(name="convlens", help="Interpret convolutional network architectures.",
                  no_args_is_help=True, add_completion=False)
db_cli = typer.Typer(help="Database migrations.", no_args_is_help=True)
keys_cli = typer.Typer(help="API keys and tenants.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
cli.add_typer(keys_cli, name="keys")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings, host: str, force: bool) -> None:
    """Refuse to serve without API keys on a non-loopback address unless forced."""
    if settings.auth_mode == "none" and not is_loopback(host) and not (force or settings.allow_insecure_bind):
        raise typer.BadParameter(
            f"Refusing to listen on {host} without API keys (auth_mode=none). Set CONVLENS_AUTH_MODE=api_key "
            "and create keys with 'convlens keys create', or pass --force-insecure-bind.",
            param_hint="--host",
        )


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default: settings.host, 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: settings.port, 8000)")] = None,
    workers: Annotated[int | None, typer.Option(help="Local job worker processes (local executor)")] = None,
    http_workers: Annotated[
        int | None, typer.Option(help="HTTP processes (default: settings.http_workers; 0: one per CPU core)")
    ] = None,
    force_insecure_bind: Annotated[bool, typer.Option(help="Allow a public bind without API keys")] = False,
) -> None:
    """Start the HTTP service (and, with the local executor, its worker subprocesses)."""
    from app.serve import serve as run_service

    settings = get_settings()
    if workers is not None:
        settings.local_workers = workers
    if http_workers is not None:
        settings.http_workers = http_workers
    bind_host = host or settings.host
    check_bind(settings, bind_host, force_insecure_bind)
    run_service(settings, host=bind_host, port=port or settings.port)


@db_cli.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Migrate the database to REVISION (default: the newest)."""
    from app import db

    settings = get_settings()
    db.upgrade(settings, revision)
    current, head = db.migration_state(settings)
    typer.echo(f"database at {current} (head {head})")


@db_cli.command("current")
def db_current() -> None:
    """Print the database's revision and the code's newest revision."""
    from app import db

    current, head = db.migration_state(get_settings())
    typer.echo(f"current={current} head={head}")
    if current != head:
        raise typer.Exit(1)


@db_cli.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument()]) -> None:
    """Roll the database back to REVISION ('base' removes everything)."""
    from app import db

    db.downgrade(get_settings(), revision)


@keys_cli.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="Tenant name (created if new)")],
    name: Annotated[str | None, typer.Option(help="A label for the key")] = None,
) -> None:
    """Create an API key for TENANT and print it (it is stored hashed and cannot be shown again)."""
    from app import db
    from app.auth.service import create_key

    settings = get_settings()
    db.upgrade(settings) if settings.auto_migrate else None
    with db.session_scope(settings) as session:
        key = create_key(session, tenant, name)
    typer.echo(key)


@keys_cli.command("revoke")
def keys_revoke(prefix: Annotated[str, typer.Argument(help="The first 10 characters of the key")]) -> None:
    """Revoke the keys that start with PREFIX."""
    from app import db
    from app.auth.service import revoke_key

    with db.session_scope(get_settings()) as session:
        count = revoke_key(session, prefix)
    typer.echo(f"revoked {count} key(s)")


def _register_optional_commands() -> None:
    """Commands whose modules live with their domains."""
    try:
        from app.reports.cli import analyze, submit

        cli.command()(analyze)
        cli.command()(submit)
    except ImportError:
        pass
    try:
        from app.jobs.cli import worker

        cli.command()(worker)
    except ImportError:
        pass


_register_optional_commands()


def main() -> None:
    cli(prog_name="convlens")


if __name__ == "__main__":
    main()
