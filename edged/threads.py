"""A thread that dies of an exception nothing expected ends the daemon, said once and loudly, never half-alive.

Each part handles the errors it expects and keeps its thread running: a model that fails to load or to run is
quarantined, a power source that fails is retried, a camera that drops is reconnected, a command that fails is
answered with the error. An exception that escapes a thread's loop is a bug; the thread is gone and its part
(frames, inference, loading, power, the outbox, commands, the MQTT network loop, the metrics endpoint) with it.
ThreadWatch then logs it once with its traceback and tells the daemon, which puts it on `state`, stops the other
parts as cleanly as it can (the outbox is flushed) and exits with EXIT_THREAD_DIED, so that systemd's
Restart=on-failure starts it afresh. Not restarted in place: a thread that died mid-way may have left its part's
state half-updated, and a fresh process is the one state known to be consistent.

Why threading.excepthook rather than a wrapper around each thread's target: the hook sees every thread of the
process, also those edged does not start itself (paho's network loop, prometheus_client's HTTP server, the
embedded broker) and any added later, with no change to the parts that start them. It is process-wide, which
fits: one process runs one daemon. ThreadWatch installs it for the daemon's run and puts the previous one back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

log = logging.getLogger(__name__)

EXIT_THREAD_DIED = 70  # EX_SOFTWARE (sysexits.h): `systemctl status` shows "status=70/SOFTWARE"


@dataclass(frozen=True)
class ThreadDeath:
    thread: str  # the thread's name, e.g. "edged-inference"
    error: str  # "RuntimeError: what it said"


class ThreadWatch:
    """While entered, any thread that dies of an exception is logged (once, with the traceback) and reported."""

    def __init__(self, on_death: Callable[[ThreadDeath], None]) -> None:
        self._on_death = on_death
        self._previous: Callable[[threading.ExceptHookArgs], object] | None = None
        self.deaths: list[ThreadDeath] = []

    def __enter__(self) -> ThreadWatch:
        self._previous = threading.excepthook
        threading.excepthook = self._hook
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _tb: TracebackType | None
    ) -> None:
        if threading.excepthook == self._hook and self._previous is not None:  # not replaced by someone since
            threading.excepthook = self._previous

    def _hook(self, args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else "(unknown)"
        message = str(args.exc_value) if args.exc_value is not None else ""
        death = ThreadDeath(name, f"{args.exc_type.__name__}: {message}" if message else args.exc_type.__name__)
        log.critical(
            "thread %s died of an unexpected error (%s): stopping edged, exit status %d for systemd to restart it",
            name,
            death.error,
            EXIT_THREAD_DIED,
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),  # type: ignore[arg-type]
        )
        self.deaths.append(death)
        try:
            self._on_death(death)
        except Exception:
            log.exception("reporting the death of thread %s failed", name)
