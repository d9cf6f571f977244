"""An MQTT broker inside the edged process, for the demo (`mqtt.broker: embedded`): nothing else to install.

    broker = EmbeddedBroker.for_config(config.mqtt).start()   # listening when this returns
    ...
    broker.stop()

Runs amqtt (the optional `[demo]` extra) on its own thread and event loop. amqtt speaks MQTT 3.1.1 only, so
MqttLink connects with 3.1.1 when `mqtt.broker` is `embedded`, whatever `mqtt.protocol` says. Anonymous, plain TCP,
no persistence: for a laptop demo, never for a deployment (use mosquitto; see deploy/).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from edged.config import MqttConfig
from edged.errors import EdgedError, MissingExtraError

log = logging.getLogger(__name__)


class EmbeddedBroker:
    """amqtt on a background thread; start() returns once it listens, stop() once it is gone."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Any = None
        self._thread: threading.Thread | None = None

    @classmethod
    def for_config(cls, config: MqttConfig) -> EmbeddedBroker:
        """Listen where the daemon will connect (mqtt.host / mqtt.port)."""
        host = "127.0.0.1" if config.host == "localhost" else config.host
        return cls(host, config.port)

    def start(self, timeout_s: float = 10.0) -> EmbeddedBroker:
        try:
            from amqtt.broker import Broker
        except ImportError:
            raise MissingExtraError("amqtt", "demo", "the embedded MQTT broker (mqtt.broker: embedded)") from None
        for name in ("amqtt", "transitions"):  # per-packet INFO logging otherwise
            logging.getLogger(name).setLevel(logging.WARNING)

        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._broker = Broker(self._amqtt_config(), loop=loop)
                loop.run_until_complete(self._broker.start())
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=serve, name="edged-mqtt-broker", daemon=True)
        self._thread.start()
        if not ready.wait(timeout_s):
            raise EdgedError(f"the embedded MQTT broker did not start within {timeout_s:.0f} s")
        if failure:
            self._thread = None
            raise EdgedError(f"the embedded MQTT broker cannot listen on {self.host}:{self.port}: {failure[0]}")
        log.info("embedded MQTT broker (amqtt, MQTT 3.1.1) listening on %s:%d", self.host, self.port)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._thread is None or self._loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
        try:
            future.result(timeout_s)
        except Exception as exc:
            log.warning("embedded MQTT broker: unclean shutdown: %s", exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout_s)
        self._thread = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _amqtt_config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
