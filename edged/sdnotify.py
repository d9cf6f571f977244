"""systemd's notify protocol (sd_notify), spoken directly: one datagram per message to $NOTIFY_SOCKET.

No dependency: the protocol is a unix datagram of KEY=VALUE lines. Outside systemd (no NOTIFY_SOCKET) every call
is a no-op, so the daemon can always call it.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._address = "\0" + address[1:] if address and address.startswith("@") else address  # abstract namespace
        self._socket: socket.socket | None = None
        if self._address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def notify(self, *lines: str) -> bool:
        """Send KEY=VALUE lines; False when not under systemd or the socket is gone (logged once, not raised)."""
        if self._socket is None or not self._address:
            return False
        try:
            self._socket.sendto("\n".join(lines).encode(), self._address)
            return True
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s; not notifying systemd any more", self._address, exc)
            self._socket = None
            return False

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def reloading(self) -> bool:
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={_monotonic_usec()}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")


def watchdog_interval_s() -> float | None:
    """Half of WatchdogSec (systemd's advice), or None when the watchdog is off or meant for another process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        return None


def _monotonic_usec() -> int:
    import time

    return int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6)
