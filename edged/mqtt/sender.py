"""The outbox's sending rules: what to hand to the MQTT client next, and what each broker answer means.

No client and no threads here (the link's sender thread owns one OutboxSender and gives it a publish function),
so the ordering rules are testable on their own:
- Messages go out in outbox order, at most `room` unacknowledged at a time.
- A message leaves the outbox only when the broker acknowledged it (QoS 0: once the client took it).
- After a reconnect the client first re-sends the previous connection's in-flight messages; nothing new is handed
  over until they are acknowledged, so nothing overtakes them.
- A transient refusal (PUBACK reason >= 0x80, e.g. 0x97 quota exceeded) is retried after a backoff *in order*:
  sending restarts from the refused message, and messages after it stay in the outbox until then (subscribers see
  a duplicated suffix, never a gap). A permanent refusal (not authorised, invalid topic/payload) is logged and
  dropped: retrying it would block everything behind it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from edged.mqtt.outbox import Outbox, OutboxError, OutboxMessage

log = logging.getLogger(__name__)

PERMANENT_REFUSALS = {0x87: "not authorized", 0x90: "topic name invalid", 0x99: "payload format invalid"}

# Hands one stored message to the client: its packet id, or None when the client did not take it (QoS 0 while
# disconnected), which stops this round.
PublishFn = Callable[[OutboxMessage], "int | None"]


class OutboxSender:
    """Owned by one thread. Call `acknowledged` for each PUBACK, `feed` while connected, `settle` to forget."""

    def __init__(
        self,
        outbox: Outbox,
        backoff_min_s: float = 1.0,
        backoff_max_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.outbox = outbox
        self.inflight: dict[int, int] = {}  # packet id -> outbox id
        self._cursor = 0  # highest outbox id handed to the client
        self._connection = 0  # the connection the in-flight ones were handed over on
        self._resending = False
        self._done: list[int] = []
        self._settle_failing = False  # removal failed (disk full): logged once, retried on every settle
        self._refused_from: int | None = None
        self._retry_at = 0.0
        self._backoff_s = 0.0
        self._backoff_min_s = backoff_min_s
        self._backoff_max_s = backoff_max_s
        self._clock = clock

    def acknowledged(self, packet_id: int, reason_code: int) -> None:
        """The broker answered one of ours (reason codes < 0x80 are success, e.g. 0x10 no matching subscribers)."""
        outbox_id = self.inflight.pop(packet_id, None)
        if outbox_id is None:
            return  # not from the outbox (retained state, command results, ...)
        if reason_code < 0x80:
            if self._refused_from is None or outbox_id < self._refused_from:
                self._done.append(outbox_id)
            return  # after a refused one: kept, sent again behind it
        if reason_code in PERMANENT_REFUSALS:
            why = PERMANENT_REFUSALS[reason_code]
            log.warning("MQTT: the broker refused outbox message %d for good (%s); dropping it", outbox_id, why)
            self._done.append(outbox_id)
            return
        if self._refused_from is None:
            self._backoff_s = min(max(2 * self._backoff_s, self._backoff_min_s), self._backoff_max_s)
            log.warning(
                "MQTT: the broker turned messages away (reason 0x%02x); sending again in %.0f s",
                reason_code,
                self._backoff_s,
            )
        self._refused_from = outbox_id if self._refused_from is None else min(outbox_id, self._refused_from)
        self._retry_at = self._clock() + self._backoff_s

    def feed(self, publish: PublishFn, room: int, connection: int) -> None:
        """Hand over the next messages while connected. `connection` changes on every (re)connect."""
        if connection != self._connection:
            self._connection = connection
            self._resending = bool(self.inflight)
        if self._resending and self.inflight:
            return
        self._resending = False
        if not self._ready_after_refusal():
            return
        free = room - len(self.inflight)
        if free <= 0:
            return
        for message in self.outbox.read_after(self._cursor, free):
            packet_id = publish(message)
            if packet_id is None:
                return
            if message.qos == 0:
                self._done.append(message.id)
            else:
                self.inflight[packet_id] = message.id
            self._cursor = message.id

    @property
    def pending_removal(self) -> int:
        return len(self._done)

    def settle(self) -> None:
        """Remove what is done from the outbox (one transaction); on a full disk keep them and retry later
        (they are sent again after a restart at worst: a duplicate, never a loss)."""
        if not self._done:
            return
        try:
            self.outbox.remove(self._done)
        except OutboxError as exc:
            if not self._settle_failing:
                log.warning("MQTT: %s; retrying", exc)
            self._settle_failing = True
            return
        if self._settle_failing:
            log.info("MQTT: acknowledged messages removed from the outbox again")
        self._settle_failing = False
        self._done = []

    def _ready_after_refusal(self) -> bool:
        if self._refused_from is None:
            if not self.inflight:
                self._backoff_s = 0.0  # a calm moment: the next refusal starts the backoff afresh
            return True
        if self.inflight or self._clock() < self._retry_at:
            return False
        self._cursor = self._refused_from - 1
        self._refused_from = None
        return True
