"""The worker's side of a TensorFlow child process (:mod:`app.jobs.child`).

A child is started ahead of its job (TensorFlow imported while idle), runs exactly one job
and exits. It never touches the database: the worker sends it the job and its gated
architecture as one JSON line on stdin, and the child sends back, as JSON lines on a pipe of
its own (not stdout, which TensorFlow may write to), ``ready``, then ``progress`` and
``event`` messages, then ``result`` or ``error``. The worker relays those to the job's
progress writer, which is the job's only writer. ``stop`` on stdin asks the job to stop at
its next step (a cancel).

The child runs under ``RLIMIT_DATA`` (the TensorFlow memory budget) and, once it has its job,
``RLIMIT_CPU``; at most ``tf_max_processes`` children run a job at once per host.

Example::

    process = TFProcess(settings)          # started, warming up
    result = run_in_tensorflow(context, writer, take=lambda: process)
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.config import Settings
from app.jobs.kinds import JobContext
from app.jobs.resources import (
    MIN_TENSORFLOW_DATA_BYTES,
    TensorFlowSlots,
    cpu_seconds_used,
    limit_process,
    tensorflow_cpu_seconds,
    tensorflow_memory_budget,
)

log = logging.getLogger("convlens.jobs")

#: Seconds a TensorFlow process gets beyond the job's own time limit before it is killed.
HARD_LIMIT_GRACE_S = 30.0
#: A crash with data memory above this share of the limit counts as running out of memory.
OUT_OF_MEMORY_SHARE = 0.75
#: Environment variable naming the file descriptor the child writes its messages to.
MESSAGE_FD_ENV = "CONVLENS_MESSAGE_FD"


class ChildCrashed(Exception):  # noqa: N818 - an outcome, not a programming error
    """The process running the attempt died without an outcome: the job is retried."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ChildFailed(Exception):  # noqa: N818
    """The job failed in a way a retry would not change (its outcome is ``problem``)."""

    def __init__(self, problem: dict[str, Any]) -> None:
        super().__init__(problem.get("detail"))
        self.problem = problem


class JobLost(Exception):  # noqa: N818
    """Another worker holds the job now (this one was presumed dead): stop, write nothing."""


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment of a child process that must see exactly these settings."""
    env = dict(os.environ)
    env["CONVLENS_SETTINGS_JSON"] = settings.model_dump_json()
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def crash_reason(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the TensorFlow process was killed by signal {-code} ({name})"
    return f"the TensorFlow process exited with status {code}"


class TFProcess:
    """One :mod:`app.jobs.child` process: started, warmed up, given one job, reaped."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        read_fd, write_fd = os.pipe()
        env = settings_env(settings)
        env[MESSAGE_FD_ENV] = str(write_fd)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app.jobs.child"],
                stdin=subprocess.PIPE,
                text=True,
                env=env,
                pass_fds=(write_fd,),
            )
        finally:
            os.close(write_fd)
        self._fd = read_fd
        self._buffer = b""
        self.ready = False
        self.memory_limit = max(tensorflow_memory_budget(settings), MIN_TENSORFLOW_DATA_BYTES)
        #: the most data memory (VmData) seen while it ran its job
        self.peak_data_bytes = 0
        try:  # the memory limit from the start: a warm process already holds TensorFlow
            limit_process(self.process.pid, memory_bytes=self.memory_limit)
        except (OSError, ProcessLookupError):
            log.warning("could not limit the memory of TensorFlow process %s", self.process.pid)

    @property
    def pid(self) -> int:
        return self.process.pid

    def _sample_memory(self) -> None:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmData:"):
                    self.peak_data_bytes = max(self.peak_data_bytes, int(line.split()[1]) * 1024)
                    return
        except (OSError, ValueError, IndexError):
            pass

    def _out_of_memory(self, code: int) -> dict[str, Any] | None:
        """A crash close to the memory limit is the job's size, not bad luck: no retry.

        (Measured: TensorFlow usually raises ResourceExhaustedError at the limit, but some
        native paths dereference a failed allocation and die with SIGSEGV.)"""
        if code >= 0 or self.peak_data_bytes < OUT_OF_MEMORY_SHARE * self.memory_limit:
            return None
        reason = crash_reason(code)
        return {
            "code": "resource_limit_exceeded",
            "title": "The job ran out of memory",
            "detail": f"{reason[0].upper()}{reason[1:]} after using {self.peak_data_bytes / 2**30:.2f} GiB "
            f"of its {self.memory_limit / 2**30:.2f} GiB memory limit: the job needs more memory than one "
            "TensorFlow job may use (tf_memory_bytes).",
        }

    def alive(self) -> bool:
        return self.process.poll() is None

    # -- messages --------------------------------------------------------------------------

    def read_messages(self, timeout: float) -> list[dict[str, Any]] | None:
        """Messages that arrived within ``timeout`` s; None at end of stream (the child exited)."""
        readable, _, _ = select.select([self._fd], [], [], timeout)
        if not readable:
            return []
        chunk = os.read(self._fd, 1 << 20)
        if not chunk:
            return None
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]

    def wait_ready(self, timeout: float = 180.0) -> bool:
        if self.ready:
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            messages = self.read_messages(0.5)
            if messages is None:
                return False
            if any(m.get("type") == "ready" for m in messages):
                self.ready = True
                return True
        return False

    def _write(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def send(self, context: JobContext) -> None:
        self._write(
            json.dumps(
                {
                    "job": context.job.to_dict(),
                    "architecture": context.architecture.to_dict(),
                    "settings": json.loads(context.settings.model_dump_json()),
                    "work_dir": str(context.work_dir),
                }
            )
        )

    def ask_to_stop(self) -> None:
        try:
            self._write("stop")
        except (OSError, ValueError):
            pass

    # -- ending ------------------------------------------------------------------------------

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def close(self) -> None:
        """End an idle process (an empty line means: no job, exit)."""
        if self.process.poll() is None:
            try:
                self._write("")
                self.process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                self.kill()
        self._close_fd()

    def _close_fd(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def supervise(self, writer: Any, *, hard_limit_s: float) -> dict[str, Any]:
        """Relay the child's messages to ``writer`` until it ends; its result.

        Raises ChildFailed (the job's error), ChildCrashed (no outcome: retry), JobLost, or
        ChildFailed with ``time_limit_exceeded`` past the hard limit (the child is killed).
        """
        deadline = time.monotonic() + hard_limit_s
        result: dict[str, Any] | None = None
        problem: dict[str, Any] | None = None
        asked_to_stop = False
        try:
            while True:
                messages = self.read_messages(0.1)
                self._sample_memory()
                for message in messages or []:
                    kind = message.get("type")
                    if kind == "event":
                        writer.event(message["kind"], message["payload"])
                    elif kind == "progress":
                        writer.progress(message["fraction"], message.get("detail"))
                    elif kind == "result":
                        result = message["result"]
                    elif kind == "error":
                        problem = message["error"]
                if messages is None:  # the child closed its end: it exited or is exiting
                    code = self.process.wait()
                    if result is not None:
                        return result
                    if problem is not None:
                        raise ChildFailed(problem)
                    out_of_memory = self._out_of_memory(code)
                    if out_of_memory is not None:
                        raise ChildFailed(out_of_memory)
                    if code == -signal.SIGXCPU:
                        raise ChildFailed(
                            {
                                "code": "time_limit_exceeded",
                                "detail": "The job used up its CPU-time limit "
                                f"({tensorflow_cpu_seconds(self.settings, hard_limit_s)} s) and was stopped.",
                            }
                        )
                    raise ChildCrashed(crash_reason(code))
                if writer.lost.is_set():
                    self.kill()
                    raise JobLost()
                if writer.cancel_requested.is_set() and not asked_to_stop:
                    self.ask_to_stop()
                    asked_to_stop = True
                if time.monotonic() >= deadline:
                    self.kill()
                    raise ChildFailed(
                        {
                            "code": "time_limit_exceeded",
                            "detail": f"The job ran past its hard time limit of {hard_limit_s:.0f} s "
                            "and was killed.",
                        }
                    )
        finally:
            self._close_fd()


def run_in_tensorflow(
    context: JobContext, writer: Any, *, take: Callable[[], TFProcess], on_start: Callable[[TFProcess | None], None]
) -> dict[str, Any]:
    """Run the job in a TensorFlow child: wait for a slot, hand the job over, relay until it ends.

    ``take()`` gives a (warm) process; ``on_start(process)`` / ``on_start(None)`` tells the
    caller which process runs the job (it kills it on a graceful stop).
    """
    settings = context.settings
    slots = TensorFlowSlots(settings)
    slot = slots.try_acquire()
    if slot is None:
        writer.progress(0.0, {"phase": "waiting for a TensorFlow slot", "attempt": context.job.attempt})
        slot = slots.acquire(should_stop=writer.should_stop)
        if slot is None:
            if writer.lost.is_set():
                raise JobLost()
            return {"status": "cancelled", "steps_completed": 0, "reason": "cancelled while waiting"}
    try:
        process = take()
        if not process.wait_ready():
            # a spare that died while idle is not the job's fault: start a fresh one once
            process.kill()
            process.close()
            process = TFProcess(settings)
            if not process.wait_ready():
                code = process.process.poll()
                process.kill()
                process.close()
                raise ChildCrashed(f"the TensorFlow process did not start (exit {code})")
        on_start(process)
        try:
            used = cpu_seconds_used(process.pid)
            limit_process(
                process.pid,
                cpu_seconds=int(used) + tensorflow_cpu_seconds(settings, context.job.time_limit_s),
            )
        except (OSError, ProcessLookupError, IndexError):
            pass  # it is dying: supervise() finds out
        try:
            process.send(context)
        except (OSError, ValueError):
            raise ChildCrashed(crash_reason(process.process.wait())) from None
        return process.supervise(writer, hard_limit_s=context.job.time_limit_s + HARD_LIMIT_GRACE_S)
    finally:
        on_start(None)
        slot.close()
