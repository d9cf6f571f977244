"""A real mosquitto for tests: start, stop, kill, restart on a free port; wait until it accepts connections.

    with Mosquitto(tmp_path) as broker:          # anonymous, 127.0.0.1, a free port
        ... broker.port ...
        broker.restart()                          # same port, same persistence file

Extra config lines (TLS listeners, password files, persistence) go in `extra_config`; `listener_options` are
the lines under the default listener. Skips the test when mosquitto is not installed (CI installs it).
`TcpRelay` sits between one client and the broker, to cut that client off at a chosen moment.
"""

from __future__ import annotations

import contextlib
import getpass
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

MOSQUITTO_CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def mosquitto_binary() -> str:
    for candidate in MOSQUITTO_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    pytest.skip("mosquitto is not installed (apt install mosquitto)")
    raise AssertionError("unreachable")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """One mosquitto process with a generated config in `workdir`."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        listener_options: list[str] | None = None,
        extra_config: list[str] | None = None,
        persistence: bool = False,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.tls_context = tls_context  # for the readiness probe of a TLS listener
        self.config_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        lines = [
            f"user {getpass.getuser()}",  # run as root, mosquitto would drop to `mosquitto`, unable to read tmp_path
            "per_listener_settings false",
            f"listener {self.port} {self.host}",
            *(listener_options or ["allow_anonymous true"]),
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            # mosquitto queues 1,000 messages per subscriber by default and silently drops beyond: a test recorder
            # that falls behind a fast publisher on a loaded machine would then see gaps that are not ours.
            "max_queued_messages 0",
        ]
        if persistence:
            lines += ["persistence true", f"persistence_location {self.workdir}/", "autosave_interval 1"]
        lines += extra_config or []
        self.config_path.write_text("\n".join(lines) + "\n")
        self._process: subprocess.Popen[bytes] | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 10.0) -> Mosquitto:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop())
        self._process = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.config_path)], stdout=self._log, stderr=subprocess.STDOUT
        )
        self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self._process.returncode}: {self.log()}")
            if self._accepts_connections():
                return
            time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not accept connections on {self.port} within {timeout_s} s: {self.log()}")

    def _accepts_connections(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                if self.tls_context is not None:
                    with self.tls_context.wrap_socket(sock, server_hostname="localhost"):
                        pass
                return True
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: a clean shutdown (mosquitto saves its persistence file); SIGKILL: a crash."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.send_signal(sig)
                try:
                    self._process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self, down_s: float = 0.0) -> None:
        """Stop cleanly, stay down `down_s`, start again on the same port."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-2000:]
        return ""

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class TcpRelay:
    """A TCP relay in front of a broker, to cut one client's connection deterministically.

    `hold()` silently discards what clients send (the broker stops hearing them; what it already had, it finishes
    delivering), `refuse()` closes every connection and turns new ones away, `admit()` lets them in again.
    """

    def __init__(self, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.upstream_port = upstream_port
        self._server = socket.create_server((host, 0))
        self.port = int(self._server.getsockname()[1])
        self._admitting = threading.Event()
        self._admitting.set()
        self._holding = threading.Event()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept_loop, name="tcp-relay", daemon=True).start()

    def hold(self) -> None:
        self._holding.set()

    def refuse(self) -> None:
        self._admitting.clear()
        self._holding.clear()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                _close(sock)

    def admit(self) -> None:
        self._admitting.set()

    def close(self) -> None:
        self._closed = True
        self.refuse()
        _close(self._server)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if not self._admitting.is_set():
                _close(client)
                continue
            try:
                upstream = socket.create_connection((self.host, self.upstream_port), timeout=2)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, from_client: bool) -> None:
        try:
            while data := source.recv(65536):
                if from_client and self._holding.is_set():
                    continue
                target.sendall(data)
        except OSError:
            pass
        _close(source)
        _close(target)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
