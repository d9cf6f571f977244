from __future__ import annotations

from pathlib import Path

import pytest

from edged.power.sources import SourceContext
from tests.power.sysfs import FakeClock, FakeSysfs


@pytest.fixture
def fs(tmp_path: Path) -> FakeSysfs:
    return FakeSysfs(tmp_path / "sys")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ctx(fs: FakeSysfs, clock: FakeClock) -> SourceContext:
    """Sources pointed at the fake tree, on the fake clock, not listening for MAVLink."""
    return SourceContext(sysfs_root=fs.root, clock=clock, listen_s=0)
