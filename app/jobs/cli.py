"""``convlens worker``: a Celery worker for the ``celery`` executor."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer


def worker(
    queues: Annotated[
        str, typer.Option(help="Comma-separated queues: analysis, training")
    ] = "analysis,training",
    concurrency: Annotated[
        int, typer.Option(help="Jobs at once (solo pool: run several workers instead)")
    ] = 1,
    pool: Annotated[
        str, typer.Option(help="solo (default) or threads; never prefork with TensorFlow")
    ] = "solo",
    loglevel: Annotated[str, typer.Option(help="Celery log level")] = "INFO",
) -> None:
    """Start a Celery worker that runs convlens jobs (CONVLENS_EXECUTOR=celery)."""
    if pool not in ("solo", "threads"):
        raise typer.BadParameter(
            "Use the solo or threads pool: TensorFlow jobs run in their own processes."
        )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from app.jobs.celery_app import app

    argv = [
        "worker",
        f"--queues={queues}",
        f"--pool={pool}",
        f"--loglevel={loglevel}",
        "--without-gossip",
        "--without-mingle",
    ]
    if pool == "threads":
        argv.append(f"--concurrency={concurrency}")
    app.worker_main(argv)
    sys.exit(0)
