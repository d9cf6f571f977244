"""The outbox's sending rules, with a fake client: order, window, reconnects, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from edged.mqtt.outbox import Outbox, OutboxMessage
from edged.mqtt.sender import OutboxSender

SUCCESS, NO_SUBSCRIBERS, QUOTA_EXCEEDED, NOT_AUTHORIZED = 0x00, 0x10, 0x97, 0x87


class FakeClient:
    """Records what it was handed; packet ids count up like paho's."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.packet_ids: dict[bytes, int] = {}
        self.taking = True

    def publish(self, message: OutboxMessage) -> int | None:
        if not self.taking:
            return None
        self.sent.append(message.payload)
        self.packet_ids[message.payload] = len(self.sent)
        return len(self.sent)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def outbox(tmp_path: Path):
    box = Outbox(tmp_path / "o.sqlite3", max_messages=1000)
    yield box
    box.close()


def fill(outbox: Outbox, count: int, qos: int = 1, start: int = 0) -> None:
    for i in range(start, start + count):
        outbox.append("t", str(i).encode(), qos=qos)


def ack(sender: OutboxSender, client: FakeClient, payload: bytes, reason: int = SUCCESS) -> None:
    sender.acknowledged(client.packet_ids[payload], reason)


def left(outbox: Outbox) -> list[bytes]:
    return [m.payload for m in outbox.read_after(0, 1000)]


def test_messages_go_out_in_order_within_the_window_and_leave_only_when_acknowledged(outbox: Outbox) -> None:
    fill(outbox, 5)
    sender, client = OutboxSender(outbox), FakeClient()
    sender.feed(client.publish, room=2, connection=1)
    assert client.sent == [b"0", b"1"]
    sender.feed(client.publish, room=2, connection=1)
    assert client.sent == [b"0", b"1"], "the window is full"
    sender.settle()
    assert left(outbox) == [b"0", b"1", b"2", b"3", b"4"], "sent is not acknowledged: all still in the outbox"
    ack(sender, client, b"0")
    sender.settle()
    assert left(outbox) == [b"1", b"2", b"3", b"4"], "only the acknowledged one left"
    ack(sender, client, b"1", NO_SUBSCRIBERS)
    sender.settle()
    assert left(outbox) == [b"2", b"3", b"4"]
    sender.feed(client.publish, room=2, connection=1)
    assert client.sent == [b"0", b"1", b"2", b"3"]


def test_after_a_reconnect_nothing_new_goes_out_before_the_resent_ones_are_acknowledged(outbox: Outbox) -> None:
    fill(outbox, 4)
    sender, client = OutboxSender(outbox), FakeClient()
    sender.feed(client.publish, room=2, connection=1)
    sender.feed(client.publish, room=10, connection=2)  # reconnected: paho re-sends 0 and 1 itself
    assert client.sent == [b"0", b"1"]
    ack(sender, client, b"0")
    sender.feed(client.publish, room=10, connection=2)
    assert client.sent == [b"0", b"1"], "1 is still being re-sent"
    ack(sender, client, b"1")
    sender.feed(client.publish, room=10, connection=2)
    assert client.sent == [b"0", b"1", b"2", b"3"]


def test_a_transient_refusal_resends_from_the_refused_message_in_order_after_a_backoff(outbox: Outbox) -> None:
    fill(outbox, 4)
    clock = Clock()
    sender, client = OutboxSender(outbox, backoff_min_s=1.0, clock=clock), FakeClient()
    sender.feed(client.publish, room=10, connection=1)
    ack(sender, client, b"0")
    ack(sender, client, b"1", QUOTA_EXCEEDED)
    ack(sender, client, b"2")
    ack(sender, client, b"3")
    sender.settle()
    assert left(outbox) == [b"1", b"2", b"3"], "2 and 3 wait to be sent again behind 1"
    fill(outbox, 1, start=4)  # a new message
    sender.feed(client.publish, room=10, connection=1)
    assert client.sent == [b"0", b"1", b"2", b"3"], "backing off"
    clock.now = 1.5
    sender.feed(client.publish, room=10, connection=1)
    assert client.sent[4:] == [b"1", b"2", b"3", b"4"]


def test_a_permanent_refusal_is_dropped_so_it_cannot_block_the_queue(
    outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    fill(outbox, 2)
    sender, client = OutboxSender(outbox), FakeClient()
    sender.feed(client.publish, room=10, connection=1)
    ack(sender, client, b"0", NOT_AUTHORIZED)
    ack(sender, client, b"1")
    sender.settle()
    assert left(outbox) == []
    assert "refused outbox message 1 for good (not authorized)" in caplog.text


def test_qos0_is_done_once_the_client_takes_it_and_kept_when_it_does_not(outbox: Outbox) -> None:
    fill(outbox, 3, qos=0)
    sender, client = OutboxSender(outbox), FakeClient()
    client.taking = False
    sender.feed(client.publish, room=10, connection=1)
    sender.settle()
    assert left(outbox) == [b"0", b"1", b"2"]
    client.taking = True
    sender.feed(client.publish, room=10, connection=1)
    sender.settle()
    assert client.sent == [b"0", b"1", b"2"] and left(outbox) == []


def test_acknowledgements_of_other_messages_are_ignored(outbox: Outbox) -> None:
    fill(outbox, 1)
    sender, client = OutboxSender(outbox), FakeClient()
    sender.feed(client.publish, room=10, connection=1)
    sender.acknowledged(999, SUCCESS)
    sender.settle()
    assert left(outbox) == [b"0"] and sender.inflight == {1: 1}
