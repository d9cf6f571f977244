"""The drone's own battery over MAVLink: BATTERY_STATUS (preferred) and SYS_STATUS, via pymavlink ([mavlink]).

Units as the protocol sends them: voltages mV (UINT16_MAX: unknown), current cA (-1: unknown), energy consumed
hJ (-1: unknown), remaining % (-1: unknown), time remaining s (0: unknown). pymavlink is imported only when a
MAVLink source is opened or detected, so the daemon never pays for it otherwise.
"""

from __future__ import annotations

import glob
import time
from typing import Any, ClassVar, Literal

from pydantic import Field

from edged.errors import MissingExtraError
from edged.power.sample import PowerSample
from edged.power.sources.base import (
    Detection,
    PowerSource,
    PowerSourceConfig,
    PowerSourceError,
    SourceContext,
)

UINT16_MAX = 65535
BATTERY_MESSAGES = ["BATTERY_STATUS", "SYS_STATUS"]
MAV_BATTERY_CHARGE_STATE_CHARGING = 7
MAV_CMD_SET_MESSAGE_INTERVAL = 511
MESSAGE_IDS = {"BATTERY_STATUS": 147, "SYS_STATUS": 1}
SERIAL_CANDIDATES = ("/dev/ttyACM*", "/dev/ttyUSB*", "/dev/serial0", "/dev/ttyAMA0", "/dev/ttyTHS*")
ENERGY_NOTE = "energy_consumed has 100 J steps"


def import_mavutil() -> Any:
    try:
        from pymavlink import mavutil
    except ImportError:
        raise MissingExtraError("pymavlink", "mavlink", "The MAVLink power source") from None
    return mavutil


def battery_voltage_v(voltages: list[int], voltages_ext: list[int] | None = None) -> float | None:
    """Sum of the known cells (cell 0 holds the whole pack when cells are not measured), V."""
    cells = [v for v in voltages if v != UINT16_MAX] + [v for v in voltages_ext or [] if v not in (0, UINT16_MAX)]
    return sum(cells) / 1e3 if cells else None


def mavlink_sample(
    source_id: str,
    battery: dict[str, Any] | None,
    sys_status: dict[str, Any] | None,
    ts: float,
    capacity_wh: float | None = None,
) -> PowerSample:
    """A sample from the latest BATTERY_STATUS and SYS_STATUS (as dicts); BATTERY_STATUS wins where both know."""
    battery, sys_status = battery or {}, sys_status or {}
    voltage = battery_voltage_v(battery.get("voltages", []), battery.get("voltages_ext"))
    if voltage is None and sys_status.get("voltage_battery", UINT16_MAX) != UINT16_MAX:
        voltage = sys_status["voltage_battery"] / 1e3
    current_ca = _known(battery.get("current_battery", -1), _known(sys_status.get("current_battery", -1)))
    current = abs(current_ca) / 100 if current_ca is not None else None
    remaining = _known(battery.get("battery_remaining", -1), _known(sys_status.get("battery_remaining", -1)))
    energy_hj = _known(battery.get("energy_consumed", -1))
    time_left = battery.get("time_remaining", 0)
    charge_state = battery.get("charge_state", 0)
    notes = [ENERGY_NOTE] if energy_hj is not None else []
    battery_wh = None
    if capacity_wh is not None and remaining is not None:
        battery_wh = capacity_wh * remaining / 100
        notes.append("battery_wh = capacity_wh × remaining %")
    return PowerSample(
        ts=ts,
        source=source_id,
        quality="measured",
        power_w=voltage * current if voltage is not None and current is not None else None,
        voltage_v=voltage,
        current_a=current,
        energy_j=energy_hj * 100.0 if energy_hj is not None else None,
        battery_pct=float(remaining) if remaining is not None else None,
        battery_wh=battery_wh,
        charging=None if charge_state == 0 else charge_state == MAV_BATTERY_CHARGE_STATE_CHARGING,
        time_remaining_s=float(time_left) if time_left and time_left > 0 else None,
        note="; ".join(notes) or None,
    )


def _known(value: int, fallback: int | None = None) -> int | None:
    return fallback if value == -1 else value


class MavlinkConfig(PowerSourceConfig):
    type: Literal["mavlink"]
    connection: str = Field(
        "udpin:0.0.0.0:14550", description="pymavlink connection: udpin:HOST:PORT, tcp:HOST:PORT, or a serial device"
    )
    baud: int = Field(57600, gt=0, description="serial baud rate")
    battery_id: int = Field(0, ge=0, le=255, description="BATTERY_STATUS id of the battery to follow")
    capacity_wh: float | None = Field(None, gt=0, description="pack capacity, to report energy left from the %")
    stale_after_s: float = Field(5.0, gt=0, description="no battery message for this long is an error")
    request_hz: float | None = Field(
        1.0, gt=0, description="ask the autopilot for BATTERY_STATUS/SYS_STATUS at this rate; null: don't ask"
    )

    rank: ClassVar[int] = 50

    @property
    def source_id(self) -> str:
        return f"mavlink:{self.connection}"

    def open(self, ctx: SourceContext) -> PowerSource:
        return MavlinkSource(self, ctx)

    @classmethod
    def detect(cls, ctx: SourceContext) -> Detection:
        config = cls(type="mavlink")
        try:
            import_mavutil()
        except MissingExtraError as exc:
            return Detection(absent=str(exc))
        serial = ", ".join(p for pattern in SERIAL_CANDIDATES for p in sorted(glob.glob(pattern)))
        hint = f"; serial ports here ({serial}) are not probed: configure `type: mavlink, connection: PORT`"
        hint = hint if serial else ""
        if ctx.listen_s <= 0:
            return Detection(absent=f"not listened for (listen time 0){hint}")
        try:
            heard = _listen(config, ctx.listen_s)
        except PowerSourceError as exc:
            return Detection(absent=exc.reason + hint)
        if not heard:
            return Detection(absent=f"nothing heard on {config.connection} in {ctx.listen_s:g} s{hint}")
        return Detection(found=[config])


def _listen(config: MavlinkConfig, seconds: float) -> bool:
    """True when a heartbeat or battery message arrives within `seconds`."""
    connection = _connect(config)
    try:
        msg = connection.recv_match(type=["HEARTBEAT", *BATTERY_MESSAGES], blocking=True, timeout=seconds)
        return msg is not None
    finally:
        connection.close()


def _connect(config: MavlinkConfig) -> Any:
    mavutil = import_mavutil()
    try:
        return mavutil.mavlink_connection(config.connection, baud=config.baud, source_system=255, source_component=191)
    except PermissionError:
        raise PowerSourceError(
            config.source_id,
            f"{config.connection}: permission denied",
            "add the user edged runs as to the dialout group",
        ) from None
    except ImportError as exc:  # a serial connection needs pyserial
        raise PowerSourceError(config.source_id, f"{config.connection} needs the '{exc.name}' package") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise PowerSourceError(config.source_id, f"cannot open {config.connection}: {reason}") from None


class MavlinkSource(PowerSource):
    """Drains whatever arrived since the last read (never blocks) and reports the latest battery state."""

    MAX_MESSAGES_PER_READ = 1000

    def __init__(self, config: MavlinkConfig, ctx: SourceContext) -> None:
        super().__init__(config.source_id)
        self.config = config
        self.clock = ctx.clock
        self.connection = _connect(config)
        self.battery: dict[str, Any] | None = None
        self.sys_status: dict[str, Any] | None = None
        self.last_heard: float | None = None  # time.monotonic() of the last battery message
        self.streams_requested = False

    def read(self) -> PowerSample:
        self._drain()
        if self.last_heard is None:
            raise PowerSourceError(self.id, f"no {' or '.join(BATTERY_MESSAGES)} received on {self.config.connection}")
        silent_s = time.monotonic() - self.last_heard
        if silent_s > self.config.stale_after_s:
            raise PowerSourceError(self.id, f"no battery message for {silent_s:.1f} s (link lost?)")
        return mavlink_sample(self.id, self.battery, self.sys_status, self.clock(), self.config.capacity_wh)

    def close(self) -> None:
        self.connection.close()

    def _drain(self) -> None:
        for _ in range(self.MAX_MESSAGES_PER_READ):
            try:
                msg = self.connection.recv_match(type=["HEARTBEAT", *BATTERY_MESSAGES], blocking=False)
            except OSError as exc:
                raise PowerSourceError(self.id, f"{self.config.connection}: {exc.strerror or exc}") from None
            if msg is None:
                return
            kind = msg.get_type()
            if kind == "HEARTBEAT":
                self._request_streams(msg)
            elif kind == "SYS_STATUS":
                self.sys_status, self.last_heard = msg.to_dict(), time.monotonic()
            elif kind == "BATTERY_STATUS" and msg.id == self.config.battery_id:
                self.battery, self.last_heard = msg.to_dict(), time.monotonic()

    def _request_streams(self, heartbeat: Any) -> None:
        """Autopilots stream battery messages at a low default rate or not at all; ask once, on first contact."""
        if self.streams_requested or self.config.request_hz is None or heartbeat.get_srcComponent() != 1:
            return
        interval_us = 1e6 / self.config.request_hz
        for message_id in MESSAGE_IDS.values():
            self.connection.mav.command_long_send(
                heartbeat.get_srcSystem(), 1, MAV_CMD_SET_MESSAGE_INTERVAL, 0, message_id, interval_us, 0, 0, 0, 0, 0
            )
        self.streams_requested = True
