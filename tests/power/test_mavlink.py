"""MAVLink over real UDP loopback: a pymavlink sender plays the autopilot, the source reads it back."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from edged.errors import MissingExtraError
from edged.power.sample import PowerSample
from edged.power.sources import PowerSourceError, SourceContext
from edged.power.sources.mavlink import MavlinkConfig, battery_voltage_v, mavlink_sample

mavutil = pytest.importorskip("pymavlink.mavutil", reason="needs the [mavlink] extra")

UNKNOWN_CELLS = [65535] * 4
SIX_CELLS_MV = [3920, 3915, 3918, 3921, 3917, 3919]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def port() -> int:
    return free_udp_port()


@pytest.fixture
def autopilot(port: int, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A MAVLink 2 sender to the source's port, as system 1 component 1 (an autopilot)."""
    monkeypatch.setenv("MAVLINK20", "1")
    mavutil.set_dialect("ardupilotmega")
    sender = mavutil.mavlink_connection(f"udpout:127.0.0.1:{port}", source_system=1, source_component=1)
    yield sender
    sender.close()


def open_source(port: int, **fields: object):
    config = MavlinkConfig.model_validate({"type": "mavlink", "connection": f"udpin:127.0.0.1:{port}", **fields})
    return config.open(SourceContext())


def read_when_ready(source: Any, accept: Callable[[PowerSample], bool] = lambda s: True) -> PowerSample:
    """UDP delivery is asynchronous even on loopback: poll the (non-blocking) source for up to 2 s."""
    deadline = time.monotonic() + 2.0
    while True:
        try:
            sample = source.read()
            if accept(sample):
                return sample
        except PowerSourceError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError("no matching sample within 2 s")
        time.sleep(0.01)


def send_battery_status(sender: Any, battery_id: int = 0, **overrides: Any) -> None:
    fields = {
        "id": battery_id,
        "battery_function": 1,  # MAV_BATTERY_FUNCTION_ALL
        "type": 1,  # MAV_BATTERY_TYPE_LIPO
        "temperature": 3150,
        "voltages": SIX_CELLS_MV + UNKNOWN_CELLS,
        "current_battery": 1234,  # cA
        "current_consumed": 2100,  # mAh
        "energy_consumed": 1890,  # hJ
        "battery_remaining": 72,
        "time_remaining": 1260,
        "charge_state": 1,  # MAV_BATTERY_CHARGE_STATE_OK
    } | overrides
    sender.mav.battery_status_send(**fields)


def send_sys_status(sender: Any, voltage_mv: int = 15800, current_ca: int = -1, remaining: int = 55) -> None:
    sender.mav.sys_status_send(0, 0, 0, 250, voltage_mv, current_ca, remaining, 0, 0, 0, 0, 0, 0)


def test_battery_status_over_udp_reads_back_in_si_units(port: int, autopilot: Any) -> None:
    source = open_source(port, capacity_wh=88.8)
    try:
        send_sys_status(autopilot)
        send_battery_status(autopilot)
        sample = read_when_ready(source, lambda s: s.energy_j is not None)
    finally:
        source.close()
    assert sample.source == f"mavlink:udpin:127.0.0.1:{port}"
    assert sample.voltage_v == pytest.approx(23.51, abs=1e-12)  # sum of the six known cells
    assert sample.current_a == pytest.approx(12.34, abs=1e-12)
    assert sample.power_w == pytest.approx(23.51 * 12.34, abs=1e-9)
    assert sample.energy_j == 189_000.0  # 1890 hJ
    assert sample.battery_pct == 72.0
    assert sample.battery_wh == pytest.approx(88.8 * 0.72, abs=1e-12)
    assert sample.time_remaining_s == 1260.0
    assert sample.charging is False
    assert sample.quality == "measured"


def test_sys_status_alone_gives_voltage_and_remaining(port: int, autopilot: Any) -> None:
    source = open_source(port)
    try:
        send_sys_status(autopilot, voltage_mv=15800, current_ca=-1, remaining=55)
        sample = read_when_ready(source)
    finally:
        source.close()
    assert sample.voltage_v == pytest.approx(15.8, abs=1e-12)
    assert sample.battery_pct == 55.0
    assert sample.current_a is None and sample.power_w is None  # -1 cA means unknown, not 0.01 A
    assert sample.battery_wh is None  # no capacity configured: not guessed


def test_another_battery_id_is_ignored(port: int, autopilot: Any) -> None:
    source = open_source(port, battery_id=0)
    try:
        send_battery_status(autopilot, battery_id=1)
        time.sleep(0.1)
        with pytest.raises(PowerSourceError, match="no BATTERY_STATUS or SYS_STATUS received"):
            source.read()
    finally:
        source.close()


def test_silent_link_is_reported_as_stale(port: int, autopilot: Any) -> None:
    source = open_source(port, stale_after_s=0.2)
    try:
        send_battery_status(autopilot)
        read_when_ready(source)
        time.sleep(0.3)
        with pytest.raises(PowerSourceError, match=r"no battery message for 0\.\d s \(link lost\?\)"):
            source.read()
    finally:
        source.close()


def test_first_heartbeat_asks_the_autopilot_for_battery_messages(port: int, autopilot: Any) -> None:
    source = open_source(port, request_hz=2.0)
    try:
        autopilot.mav.heartbeat_send(2, 3, 0, 0, 4)  # quadrotor, ArduPilot, active
        send_battery_status(autopilot)
        read_when_ready(source)
        requested = {}
        for _ in range(2):
            command = autopilot.recv_match(type="COMMAND_LONG", blocking=True, timeout=2.0)
            assert command is not None, "no SET_MESSAGE_INTERVAL came back"
            requested[int(command.param1)] = command.param2
    finally:
        source.close()
    assert command.command == 511  # MAV_CMD_SET_MESSAGE_INTERVAL
    assert requested == {147: 500_000.0, 1: 500_000.0}  # BATTERY_STATUS and SYS_STATUS every 0.5 s


def test_port_in_use_is_reported(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as blocker:
        blocker.bind(("127.0.0.1", port))
        with pytest.raises(PowerSourceError, match=r"cannot open udpin:127\.0\.0\.1:\d+: .*in use"):
            open_source(port)


def test_cell_zero_carries_the_pack_voltage_when_cells_are_not_measured() -> None:
    assert battery_voltage_v([22200, *[65535] * 9]) == 22.2
    assert battery_voltage_v([65534, 4000, *[65535] * 8]) == pytest.approx(69.534, abs=1e-12)  # over UINT16_MAX-1
    assert battery_voltage_v([65535] * 10) is None


def test_charge_state_charging_is_reported() -> None:
    sample = mavlink_sample("m", {"voltages": [16800], "charge_state": 7, "current_battery": -300}, None, 0.0)
    assert sample.charging is True
    assert sample.current_a == pytest.approx(3.0, abs=1e-12)


def test_without_pymavlink_the_source_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pymavlink", None)  # as if the [mavlink] extra were not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'edged\[mavlink\]'"):
        MavlinkConfig(type="mavlink").open(SourceContext())
    assert "edged[mavlink]" in (MavlinkConfig.detect(SourceContext()).absent or "")


def test_detection_that_may_not_listen_says_so() -> None:
    assert "not listened for" in (MavlinkConfig.detect(SourceContext(listen_s=0)).absent or "")
