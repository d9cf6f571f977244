"""MqttLink: the daemon's one connection to the broker (paho-mqtt 2.x, MQTT 5 or 3.1.1, TLS, auth).

    link = MqttLink(config.mqtt, on_command=apply_command)  # opens the outbox (raises OutboxError)
    link.start()                                            # connects in the background; never blocks
    link.publish_detections(DetectionsMessage(...))         # durable on return; sent when the broker is there
    link.publish_event(EventMessage(...))                   # durable too, in order with the detections
    link.publish_state(StateMessage(...))                   # retained; re-published on every reconnect
    link.publish_count(ObjectCountMessage(...))             # retained per label; re-published on every reconnect
    link.stop()                                             # flush (bounded), `stopped`, disconnect

Threads. paho's network thread runs the callbacks and never waits on anything else. A *sender* thread feeds stored
messages to paho while connected, by the rules of `edged.mqtt.sender` (in order; at most `window` unacknowledged,
within the broker's Receive Maximum; deleted on PUBACK; refusals retried in order). A *command* thread runs the
daemon's `on_command` handler, so a slow handler never stalls the network; the handler must be thread-safe
(typically it puts the command on the daemon's queue). The publish_* methods are safe from any thread and do no
network I/O.

Delivery guarantees (detections, track events and governor decisions):
- Every message is committed to the outbox before `publish_*` returns, and leaves only when acknowledged.
- The broker receives them in outbox order. After a reconnect, paho first re-sends what was in flight (DUP) and
  only then does the sender continue; after a restart (even kill -9) the outbox replays from its oldest message.
- At-least-once: a subscriber may see a message twice after a reconnect or restart (a suffix of what it already
  had, re-sent in order) but never a gap. Detections carry a monotonic `frame`: drop any frame <= the last seen.
- Past `outbox_max_messages` the oldest waiting messages are dropped; the count is in `stats.outbox_dropped`.
Retained messages (availability, state, object counts, discovery) bypass the outbox: only the latest matters, and it
is re-published on every connect. `power` and `stats` are published only while connected (cumulative counters).

Availability: `online` on connect, `stopped` on stop(clean=True), `offline` as the last will (kill -9, power cut,
network loss) and on stop(clean=False). A broker that is away is logged once per outage, not once per message;
paho retries with exponential backoff (1 s .. 60 s).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import ssl
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edged.config import MqttConfig
from edged.errors import EdgedError
from edged.mqtt.commands import (
    Command,
    CommandError,
    CommandRejected,
    command_value,
    parse_command,
)
from edged.mqtt.discovery import discovery_config
from edged.mqtt.messages import (
    AVAILABILITY_OFFLINE,
    AVAILABILITY_ONLINE,
    AVAILABILITY_STOPPED,
    CommandResult,
    DecisionMessage,
    DetectionsMessage,
    EventMessage,
    ObjectCountMessage,
    PipelineStats,
    PowerMessage,
    StateMessage,
    StatsMessage,
)
from edged.mqtt.outbox import Outbox, OutboxMessage
from edged.mqtt.sender import OutboxSender
from edged.mqtt.topics import Topics

log = logging.getLogger(__name__)

CommandHandler = Callable[[Command], str | None]  # returns a caveat for the answer, or None

DEFAULT_WINDOW = 100
COMMAND_QUEUE_SIZE = 64
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 60
LAST_FRAME = "last_frame"  # the outbox counter that holds the newest frame number committed
LAST_TRACK = "last_track_id"  # and the highest track id committed (ids go on from it after a restart)


class MqttError(EdgedError):
    """The MQTT settings cannot be used (e.g. a TLS file that does not load)."""


@dataclass(frozen=True)
class _ReplyRoute:
    """Where a command's result goes: always set/<name>/result, plus the MQTT 5 response topic when given."""

    name: str
    response_topic: str | None = None
    correlation_data: bytes | None = None


# QoS 1 messages the link publishes outside the outbox (state, availability, results) must fit in the broker's
# Receive Maximum too: when the broker sets one, the outbox leaves them this much room.
_DIRECT_PUBLISH_ROOM = 4
_SETTLE_BATCH = 256

# Events for the sender thread: ("ack", packet id, reason code), a wake-up, or stop.
_WAKE = ("wake",)
_STOP = ("stop",)


class MqttLink:
    """Publishes one device's results and serves its commands. See the module docstring for the guarantees."""

    def __init__(
        self,
        config: MqttConfig,
        on_command: CommandHandler,
        *,
        window: int = DEFAULT_WINDOW,
        device_name: str | None = None,
        labels: Sequence[str] = (),
        variants: Sequence[str] = (),
    ) -> None:
        self.config = config
        self.topics = Topics(config.topic_prefix, config.device_id, config.discovery_prefix)
        self._on_command = on_command
        self._window = window
        self._device_name = device_name
        self._discovered = (list(labels), list(variants))  # Home Assistant entities per label; the variant select
        self._max_command_bytes: int = config.max_command_bytes
        self._protocol = _protocol(config)
        self._client = self._make_client()  # first: a TLS error must not leave the outbox locked
        self._outbox = Outbox(config.outbox_path, config.outbox_max_messages)

        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._commands: queue.Queue[tuple[Command, _ReplyRoute] | None] = queue.Queue(COMMAND_QUEUE_SIZE)
        # Held while publishing anything whose order matters relative to (re)connects: the connection flag, the
        # latest retained state, the sender's batches. Re-entrant: paho may call on_disconnect inside publish().
        self._connection_lock = threading.RLock()
        self._connected = False
        self._connection_count = 0
        self._subscribed_mid: int | None = -1  # the pending SUBSCRIBE's mid; None once acknowledged
        self._latest_state: bytes | None = None
        self._latest_counts: dict[str, bytes] = {}  # topic -> the latest count of that label
        self._last_track_id = self._outbox.counter(LAST_TRACK) or 0
        self._receive_maximum = window
        self._outage_since: float | None = None
        self._started = False
        self._closed = False
        self._sender = threading.Thread(target=self._send_loop, name="edged-mqtt-sender", daemon=True)
        self._command_worker = threading.Thread(target=self._command_loop, name="edged-mqtt-commands", daemon=True)

    # --- lifecycle ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (paho retries with backoff) and start sending the outbox."""
        if self._started:
            return
        self._started = True
        self._sender.start()
        self._command_worker.start()
        self._client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive_s)
        self._client.loop_start()
        log.info(
            "MQTT: connecting to %s:%d as %s (MQTT %s); %d message(s) waiting in the outbox",
            self.config.host,
            self.config.port,
            self._client_id,
            "5" if self._protocol == mqtt.MQTTv5 else "3.1.1",
            self._outbox.depth,
        )

    def stop(self, clean: bool = True, timeout_s: float = 5.0, failed: bool = False) -> None:
        """Flush the outbox (up to `timeout_s`, while connected), announce `stopped` (clean) or `offline`, close.

        `failed`: the daemon exits on a fault (edged.threads): flush as a clean stop does, announce `offline`.
        What is not acknowledged by then stays in the outbox and is sent by the next start. Waits only on the
        threads still alive: with a dead sender nothing more leaves the outbox, with a dead network loop nothing
        is acknowledged (paho then writes what is published from the caller's thread, unconfirmed).
        """
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout_s
        if self._started:
            if clean and self.connected and self._network_alive() and self._sender.is_alive():
                self.flush(timeout_s)
            self._announce(AVAILABILITY_STOPPED if clean and not failed else AVAILABILITY_OFFLINE, deadline)
            self._events.put(_STOP)
            with contextlib.suppress(queue.Full):
                self._commands.put(None, timeout=1.0)
            self._sender.join(timeout=max(0.1, deadline - time.monotonic()) + 1.0)
            self._command_worker.join(timeout=1.0)
            self._client.disconnect()
            self._client.loop_stop()
        self._outbox.close()

    def flush(self, timeout_s: float) -> bool:
        """Wait until the outbox is empty (everything acknowledged). False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._outbox.depth > 0:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    @property
    def connected(self) -> bool:
        return self._connected

    def _network_alive(self) -> bool:
        """paho's network thread runs (loop_start); it dies only of a bug, which edged.threads reports. paho clears
        its handle when the thread ends, and then writes what is published from the caller's thread."""
        thread = self._client._thread  # paho keeps no public handle on it
        return thread is not None and thread.is_alive()

    @property
    def accepting_commands(self) -> bool:
        """Connected, and the broker has confirmed the subscription to `set/+`."""
        return self._connected and self._subscribed_mid is None

    @property
    def outbox_depth(self) -> int:
        return self._outbox.depth

    @property
    def outbox_dropped(self) -> int:
        return self._outbox.dropped

    # --- publishing (any thread; no network I/O) ----------------------------------------------------------------

    def publish_detections(self, message: DetectionsMessage) -> None:
        """One frame's detections: durable when this returns; delivered at least once, in order."""
        counters = {LAST_FRAME: message.frame}
        track_ids = [o.track_id for o in message.objects if o.track_id is not None]
        if track_ids and max(track_ids) > self._last_track_id:
            self._last_track_id = counters[LAST_TRACK] = max(track_ids)
        self._enqueue(self.topics.detections, message.to_json(), self.config.detections_qos, counters)

    @property
    def last_published_frame(self) -> int | None:
        """The highest frame number ever committed to the outbox (exact after a kill -9; None before the first)."""
        return self._outbox.counter(LAST_FRAME)

    @property
    def last_published_track_id(self) -> int | None:
        """The highest track id ever committed to the outbox with its detections (None before the first)."""
        return self._outbox.counter(LAST_TRACK)

    def publish_event(self, message: EventMessage) -> None:
        """One track event: durable when this returns; delivered at least once, in order with the detections."""
        self._enqueue(self.topics.events, message.to_json(), 1)

    def publish_count(self, message: ObjectCountMessage) -> None:
        """Retained per label; the latest of each is re-published on every reconnect.

        QoS 0, as Frigate's counts: only the latest value matters, and a QoS 0 publish is lost only with its
        connection, after which every latest count goes out again. QoS 1 would spend one unacknowledged slot per
        label at each connect, past a broker's Receive Maximum for a zoo of 80 labels."""
        topic, payload = self.topics.object_count(message.label), message.to_json()
        with self._connection_lock:
            self._latest_counts[topic] = payload
            if self._connected:
                self._client.publish(topic, payload, qos=0, retain=True)

    def publish_decision(self, message: DecisionMessage) -> None:
        """One governor switch: durable when this returns; delivered at least once, in order."""
        self._enqueue(self.topics.decision, message.to_json(), 1)

    def publish_state(self, message: StateMessage) -> None:
        """Retained; the latest is re-published on every reconnect.

        With paho's network loop dead (edged then stops), no acknowledgement can come back: QoS 0, or the state that
        says why would wait behind a full in-flight window and never leave."""
        payload = message.to_json()
        with self._connection_lock:
            self._latest_state = payload
            if self._connected:
                qos = 1 if not self._started or self._network_alive() else 0
                self._client.publish(self.topics.state, payload, qos=qos, retain=True)

    def publish_power(self, message: PowerMessage) -> None:
        """Periodic sample; skipped while disconnected (energy_j is cumulative)."""
        self._publish_if_connected(self.topics.power, message.to_json())

    def publish_stats(self, stats: PipelineStats) -> None:
        """Periodic figures; the outbox depth and drop count are added here. Skipped while disconnected."""
        message = StatsMessage(
            device=self.config.device_id,
            at=time.time(),
            outbox_depth=self._outbox.depth,
            outbox_dropped=self._outbox.dropped,
            **stats.model_dump(),
        )
        self._publish_if_connected(self.topics.stats, message.to_json())

    def _enqueue(self, topic: str, payload: bytes, qos: int, counters: dict[str, int] | None = None) -> None:
        self._outbox.append(topic, payload, qos, counters=counters)
        self._events.put(_WAKE)

    def _publish_if_connected(self, topic: str, payload: bytes) -> None:
        if self._connected:
            self._client.publish(topic, payload, qos=1)

    # --- the client and its callbacks (paho's network thread: quick, never raising) ----------------------------

    @property
    def _client_id(self) -> str:
        return self.config.client_id or f"edged-{self.config.device_id}"

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            protocol=self._protocol,
            clean_session=True if self._protocol != mqtt.MQTTv5 else None,
        )
        client.max_inflight_messages_set(self._window)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.will_set(self.topics.availability, AVAILABILITY_OFFLINE, qos=1, retain=True)
        if self.config.username is not None:
            password = self.config.password.get_secret_value() if self.config.password is not None else None
            client.username_pw_set(self.config.username, password)
        if self.config.tls is not None:
            _configure_tls(client, self.config)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, properties: Properties | None
    ) -> None:
        if reason.is_failure:
            self._note_outage(f"the broker refused the connection: {reason} (check mqtt.username/password/tls)")
            return
        try:
            self._receive_maximum = min(self._window, int(getattr(properties, "ReceiveMaximum", self._window)))
            with self._connection_lock:
                self._connected = True
                self._connection_count += 1
                client.publish(self.topics.availability, AVAILABILITY_ONLINE, qos=1, retain=True)
                if self._latest_state is not None:
                    client.publish(self.topics.state, self._latest_state, qos=1, retain=True)
            self._publish_discovery()
            filters = [(self.topics.commands, 1)]
            if self.topics.home_assistant_status:
                filters.append((self.topics.home_assistant_status, 1))
            self._subscribed_mid = client.subscribe(filters)[1]
            with self._connection_lock:  # after the SUBSCRIBE: a zoo's 80 labels must not hold back the commands
                for topic, payload in self._latest_counts.items():
                    client.publish(topic, payload, qos=0, retain=True)
            self._events.put(_WAKE)
            self._note_connected()
        except Exception:
            log.exception("MQTT: error while setting up the connection")

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        failure = sys.exc_info()[1]  # paho calls this from its `except OSError` (refused, DNS, TLS handshake)
        why = f" ({failure})" if failure is not None else ""
        self._note_outage(f"cannot reach the broker at {self.config.host}:{self.config.port}{why}")

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _properties: Any
    ) -> None:
        with self._connection_lock:
            self._connected = False
            self._subscribed_mid = -1
        if not self._closed:
            self._note_outage(f"connection lost ({reason})")

    def _on_publish(self, _client: mqtt.Client, _userdata: Any, mid: int, reason: ReasonCode, _props: Any) -> None:
        self._events.put(("ack", mid, reason.value))

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, mid: int, reasons: list[ReasonCode], _p: Any) -> None:
        if mid == self._subscribed_mid:
            refused = [str(reason) for reason in reasons if reason.is_failure]
            if refused:
                log.warning("MQTT: the broker refused the command subscription (%s): commands are off", refused[0])
                return
            self._subscribed_mid = None

    def _on_message(self, client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            if message.topic == self.topics.home_assistant_status:
                if message.payload.strip() == b"online":
                    self._publish_discovery()
                return
            name = self.topics.command_name(message.topic)
            if name is not None:
                self._receive_command(name, message)
        except Exception:
            log.exception("MQTT: error while handling a message on %s", message.topic)

    def _publish_discovery(self) -> None:
        topic = self.topics.discovery
        if topic is not None:
            payload = discovery_config(self.topics, self._device_name, *self._discovered)
            self._client.publish(topic, _json_bytes(payload), qos=1, retain=True)

    def _note_outage(self, why: str) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.warning(
                "MQTT: %s; retrying with backoff up to %d s, %d message(s) wait in the outbox",
                why,
                RECONNECT_MAX_S,
                self._outbox.depth,
            )
        else:
            log.debug("MQTT: still unavailable: %s", why)

    def _note_connected(self) -> None:
        if self._outage_since is not None:
            away = time.monotonic() - self._outage_since
            self._outage_since = None
            log.info("MQTT: connected again after %.0f s; sending %d waiting message(s)", away, self._outbox.depth)
        else:
            log.info("MQTT: connected to %s:%d", self.config.host, self.config.port)

    def _announce(self, availability: str, deadline: float) -> None:
        if not self._connected:
            return
        info = self._client.publish(self.topics.availability, availability, qos=1, retain=True)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:  # the link dropped since the check: nothing queued, the will stands in
            return
        while not info.is_published() and self._connected and self._network_alive() and time.monotonic() < deadline:
            time.sleep(0.01)

    # --- commands -------------------------------------------------------------------------------------------------

    def _receive_command(self, name: str, message: mqtt.MQTTMessage) -> None:
        """Validate on the network thread (pure, quick); apply on the command thread."""
        route = _reply_route(name, message)
        try:
            command = parse_command(name, bytes(message.payload), self._max_command_bytes)
        except CommandError as exc:
            log.info("MQTT: refused set/%s: %s", name, exc)
            self._publish_result(route, self._result(name, error=str(exc)))
            return
        try:
            self._commands.put_nowait((command, route))
        except queue.Full:
            error = f"busy: {COMMAND_QUEUE_SIZE} commands are waiting; try again"
            self._publish_result(route, self._result(name, error=error))

    def _command_loop(self) -> None:
        while (item := self._commands.get()) is not None:
            command, route = item
            self._publish_result(route, self._apply(command))

    def _apply(self, command: Command) -> CommandResult:
        try:
            warning = self._on_command(command)
        except CommandRejected as exc:
            log.info("MQTT: set/%s rejected: %s", command.name, exc)
            return self._result(command.name, error=str(exc))
        except Exception as exc:
            log.exception("MQTT: the handler failed on set/%s", command.name)
            return self._result(command.name, error=f"internal error while applying the command: {exc}")
        log.info("MQTT: applied set/%s = %r", command.name, command_value(command))
        return self._result(command.name, value=command_value(command), warning=warning)

    def _result(
        self,
        name: str,
        *,
        error: str | None = None,
        value: bool | float | str | None = None,
        warning: str | None = None,
    ) -> CommandResult:
        return CommandResult(
            device=self.config.device_id,
            command=name,
            ok=error is None,
            error=error,
            value=value,
            warning=warning,
            at=time.time(),
        )

    def _publish_result(self, route: _ReplyRoute, result: CommandResult) -> None:
        payload = result.to_json()
        self._client.publish(self.topics.command_result(route.name), payload, qos=1)
        if route.response_topic:
            properties = Properties(PacketTypes.PUBLISH)
            if route.correlation_data is not None:
                properties.CorrelationData = route.correlation_data
            self._client.publish(route.response_topic, payload, qos=1, properties=properties)

    # --- the sender thread: outbox -> broker, in order --------------------------------------------------------

    def _send_loop(self) -> None:
        sender = OutboxSender(self._outbox, RECONNECT_MIN_S, RECONNECT_MAX_S)
        while True:
            stop = self._collect_events(sender)
            if stop:
                sender.settle()
                return
            # Under the connection lock: a batch never straddles a reconnect, so it cannot overtake paho's re-sending
            # of the previous connection's in-flight messages.
            with self._connection_lock:
                if self._connected:
                    sender.feed(self._publish_stored, self._room(), self._connection_count)
            # Deletes are batched while busy (one commit per batch): a crash then costs duplicates, never a loss.
            if sender.pending_removal >= _SETTLE_BATCH or self._events.empty():
                sender.settle()

    def _collect_events(self, sender: OutboxSender) -> bool:
        """Wait up to 0.5 s for something to do, then take every event waiting. True when asked to stop."""
        stop = False
        try:
            event = self._events.get(timeout=0.5)
            while True:
                if event[0] == "ack":
                    sender.acknowledged(event[1], event[2])
                elif event is _STOP:
                    stop = True
                event = self._events.get_nowait()
        except queue.Empty:
            pass
        return stop

    def _publish_stored(self, message: OutboxMessage) -> int | None:
        info = self._client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
        if message.qos == 0 and info.rc != mqtt.MQTT_ERR_SUCCESS:
            return None  # QoS 0 is not queued by paho: it stays in the outbox for the next connection
        return info.mid  # QoS 1/2 while the connection drops: paho keeps it and re-sends it on reconnect

    def _room(self) -> int:
        """How many outbox messages may be unacknowledged at once."""
        receive_maximum = self._receive_maximum
        if receive_maximum < self._window:  # the broker set a limit: leave room for the direct publishes
            receive_maximum = max(1, receive_maximum - _DIRECT_PUBLISH_ROOM)
        return min(self._window, receive_maximum)


def _protocol(config: MqttConfig) -> mqtt.MQTTProtocolVersion:
    if config.broker == "embedded" and config.protocol == "5":
        log.info("MQTT: the embedded broker (amqtt) speaks MQTT 3.1.1 only; using 3.1.1")
        return mqtt.MQTTv311
    return mqtt.MQTTv5 if config.protocol == "5" else mqtt.MQTTv311


def _configure_tls(client: mqtt.Client, config: MqttConfig) -> None:
    tls = config.tls
    assert tls is not None
    try:
        client.tls_set(
            ca_certs=str(tls.ca_certs) if tls.ca_certs else None,
            certfile=str(tls.certfile) if tls.certfile else None,
            keyfile=str(tls.keyfile) if tls.keyfile else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    except (OSError, ssl.SSLError) as exc:
        raise MqttError(f"mqtt.tls: cannot load the certificates: {exc}") from None
    client.tls_insecure_set(tls.insecure)


def _reply_route(name: str, message: mqtt.MQTTMessage) -> _ReplyRoute:
    properties = getattr(message, "properties", None)
    response_topic = getattr(properties, "ResponseTopic", None) or None
    if response_topic is not None and not _publishable(response_topic):
        # MQTT 5 forbids wildcards in a topic one publishes to: answer on set/<name>/result only
        log.warning(
            "MQTT: set/%s asked for an answer on %r, where nothing can be published; ignored", name, response_topic
        )
        response_topic = None
    correlation = getattr(properties, "CorrelationData", None)
    return _ReplyRoute(name, response_topic, bytes(correlation) if correlation is not None else None)


def _publishable(topic: str) -> bool:
    """A topic a client may publish to (MQTT 5, 4.7): not empty, no wildcards, no NUL, at most 65535 bytes."""
    return bool(topic) and not any(c in topic for c in "+#\0") and len(topic.encode("utf-8", "replace")) <= 65535


def _json_bytes(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()
