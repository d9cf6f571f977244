"""Raspberry Pi 5 PMIC rails, read with `vcgencmd pmic_read_adc`.

The PMIC measures current and voltage of its own regulators (VDD_CORE, DDR, 3V3_SYS, ...), so their sum is the
SoC-side power. It cannot see what hangs off the 5 V input directly (USB devices, fan, HATs, a camera on 5 V) nor
its own conversion losses: EXT5V has a voltage reading but no current sensor.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import ClassVar, Literal

from pydantic import Field

from edged.power.sample import PowerSample
from edged.power.sources.base import (
    Detection,
    PowerSource,
    PowerSourceConfig,
    PowerSourceError,
    SourceContext,
)

PMIC_NOTE = (
    "sum of the PMIC's rails: loads on the 5 V input (USB devices, fan, HATs) and the PMIC's conversion losses "
    "are not seen (EXT5V has no current sensor)"
)
_LINE = re.compile(r"^\s*(?P<rail>\S+?)_(?P<kind>[AV])\s+(?:current|volt)\(\d+\)=(?P<value>[-+0-9.eE]+)[AV]\s*$")


def parse_pmic_adc(text: str) -> tuple[dict[str, float], dict[str, float]]:
    """`vcgencmd pmic_read_adc` output -> (amps by rail, volts by rail). Lines it does not know are skipped."""
    amps: dict[str, float] = {}
    volts: dict[str, float] = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match:
            target = amps if match["kind"] == "A" else volts
            target[match["rail"]] = float(match["value"])
    return amps, volts


def pmic_sample(source_id: str, text: str, ts: float) -> PowerSample:
    """Rail powers and their sum; raises ValueError when the text holds no rail that has both I and V."""
    amps, volts = parse_pmic_adc(text)
    rails = {rail: amps[rail] * volts[rail] for rail in amps if rail in volts}
    if not rails:
        first_line = text.strip().splitlines()[0] if text.strip() else "(nothing)"
        raise ValueError(f"no rail readings in the output (not a Raspberry Pi 5?): {first_line[:80]}")
    return PowerSample(
        ts=ts,
        source=source_id,
        quality="measured",
        power_w=sum(rails.values()),
        voltage_v=volts.get("EXT5V"),
        rails=rails,
        note=PMIC_NOTE,
    )


class Pi5PmicConfig(PowerSourceConfig):
    type: Literal["pi5_pmic"]
    vcgencmd: str = Field("vcgencmd", description="the vcgencmd program (a path, or a name on PATH)")
    timeout_s: float = Field(2.0, gt=0)

    rank: ClassVar[int] = 20

    @property
    def source_id(self) -> str:
        return "pi5_pmic"

    def open(self, ctx: SourceContext) -> PowerSource:
        return Pi5PmicSource(self, ctx)

    @classmethod
    def detect(cls, ctx: SourceContext) -> Detection:
        if shutil.which("vcgencmd") is None:
            return Detection(absent="vcgencmd is not on PATH (it comes with Raspberry Pi OS)")
        return Detection(found=[cls(type="pi5_pmic")])


class Pi5PmicSource(PowerSource):
    def __init__(self, config: Pi5PmicConfig, ctx: SourceContext) -> None:
        super().__init__(config.source_id)
        self.command = [config.vcgencmd, "pmic_read_adc"]
        self.timeout_s = config.timeout_s
        self.clock = ctx.clock
        self.read()

    def read(self) -> PowerSample:
        try:
            done = subprocess.run(self.command, capture_output=True, text=True, timeout=self.timeout_s, check=False)
        except FileNotFoundError:
            raise PowerSourceError(self.id, f"{self.command[0]} not found") from None
        except subprocess.TimeoutExpired:
            raise PowerSourceError(self.id, f"`{' '.join(self.command)}` took over {self.timeout_s} s") from None
        except OSError as exc:
            raise PowerSourceError(self.id, f"cannot run {self.command[0]}: {exc.strerror or exc}") from None
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip()[:120]
            raise PowerSourceError(self.id, f"`{' '.join(self.command)}` failed ({done.returncode}): {said}")
        try:
            return pmic_sample(self.id, done.stdout, self.clock())
        except ValueError as exc:
            raise PowerSourceError(self.id, str(exc)) from None
