"""The reconciler: one pass every ``reconcile_interval_s`` in the API process (both executors).

It re-queues running jobs whose heartbeat went stale (their worker is lost; failed at the
attempt cap), ends queued jobs that were cancelled or have no attempts left, settles what
waited on the jobs that ended, and re-sends only the queued jobs whose message is overdue:
never sent (a send failed) or sent long ago (``redispatch_after_s``, doubling), and folds the
tenants' storage deltas into their counters (every pass: the storage quota sums the deltas not
yet folded on each new architecture, so they must stay few). Now and then it forgets silent
worker rows and deletes the files of jobs that ended.

Example::

    outcome = reconcile_once(settings, dispatch)   # dispatch(job_id, kind) -> bool
    outcome["requeued"], outcome["sent"]
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from app.config import Settings
from app.db import session_scope
from app.jobs import lifecycle, repository

log = logging.getLogger("convlens.jobs")

Dispatch = Callable[[str, str], bool]

#: How often the slower chores run (forgetting silent workers, deleting ended jobs' files).
CHORES_INTERVAL_S = 60.0
#: A worker row silent this long is forgotten.
FORGET_WORKERS_AFTER_S = 3600.0


def note_dispatch(settings: Settings, job_id: str) -> None:
    """After an executor handed ``job_id`` over: note the send (``dispatched_at``) in a
    transaction of its own, so that this reconciler resends it only once it is overdue. Never
    raises: a send not noted only means an early resend."""
    try:
        with session_scope(settings) as session:
            repository.mark_dispatched(session, job_id)
    except Exception:  # noqa: BLE001 - only the reconciler's bookkeeping
        log.warning("could not note the dispatch of job %s", job_id, exc_info=True)


def reconcile_once(settings: Settings, dispatch: Dispatch) -> dict[str, list[str]]:
    """One pass. ``dispatch(job_id, kind)`` sends a job id to the executor (True when sent)."""
    paths: list[Path] = []
    with session_scope(settings) as session:
        changed = repository.recover_stale(
            session, stale_before=repository.utc_cutoff(settings.heartbeat_timeout_s)
        )
        exhausted = repository.fail_exhausted_queued(session)
        cancelled = repository.cancel_queued(session)
        requeued = [(row.id, row.kind) for row, status in changed if status == "queued"]
        ended = [row for row, status in changed if status != "queued"] + exhausted + cancelled
        for row in ended:
            paths += lifecycle.ended(session, settings, row)
        failed = [row.id for row, status in changed if status == "failed"] + [r.id for r in exhausted]
        cancelled_ids = [row.id for row in cancelled] + [r.id for r, s in changed if s == "cancelled"]
    lifecycle.delete_paths(paths)
    with session_scope(settings) as session:
        overdue = repository.overdue_queued(
            session,
            never_sent_before=repository.utc_cutoff(settings.reconcile_interval_s),
            redispatch_after_s=settings.redispatch_after_s,
        )
    sent = []
    for job_id, kind in dict.fromkeys(requeued + overdue):
        try:
            if dispatch(job_id, kind):
                sent.append(job_id)
        except Exception:  # noqa: BLE001 - dispatch should not raise; the next pass retries
            log.warning("reconciler could not dispatch %s", job_id, exc_info=True)
    if changed or exhausted or cancelled:
        log.info(
            "reconciler: requeued %s, failed %s, cancelled %s",
            [job_id for job_id, _ in requeued],
            failed,
            cancelled_ids,
        )
    return {
        "requeued": [job_id for job_id, _ in requeued],
        "failed": failed,
        "cancelled": cancelled_ids,
        "overdue": [job_id for job_id, _ in overdue],
        "sent": sent,
    }


def chores(settings: Settings) -> None:
    """The slower part: forget silent workers, delete the files of jobs that ended and the
    expired idempotency keys (the storage deltas are folded on every pass, not here)."""
    from app.idempotency.service import purge_expired

    with session_scope(settings) as session:
        repository.forget_workers(session, silent_since=repository.utc_cutoff(FORGET_WORKERS_AFTER_S))
        purge_expired(session)
    lifecycle.sweep(settings)


def fold_storage_deltas(settings: Settings) -> int:
    """Fold the tenants' pending storage deltas into their counters (one short transaction;
    nothing written when there are none). Every pass does it: a tenant adding hundreds of
    architectures a second would otherwise leave tens of thousands of deltas between two
    chores, and the quota check of each new architecture sums them."""
    from app.storage.repository import fold_deltas

    with session_scope(settings) as session:
        return fold_deltas(session)


class Reconciler:
    """A daemon thread calling :func:`reconcile_once` every ``reconcile_interval_s``."""

    def __init__(self, settings: Settings, dispatch: Dispatch) -> None:
        self.settings = settings
        self.dispatch = dispatch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="convlens-reconciler", daemon=True)
        self.last_run: float | None = None

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        last_chores = 0.0
        while not self._stop.wait(self.settings.reconcile_interval_s):
            try:
                reconcile_once(self.settings, self.dispatch)
                fold_storage_deltas(self.settings)
                self.last_run = time.time()
                if time.monotonic() - last_chores >= CHORES_INTERVAL_S:
                    last_chores = time.monotonic()
                    chores(self.settings)
            except Exception:  # noqa: BLE001 - keep reconciling
                log.exception("reconciler pass failed")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
