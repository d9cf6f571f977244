"""The embedded demo: what `edged run` does without a config.

The shipped model zoo on the bundled clip (10 fps, looped in real time, processed at the fps target: 5), a
simulated battery (every power figure it produces says `simulated`), a 10-minute mission the governor must stretch
the battery over, and MQTT on localhost:1883 — a broker already running there, or else one started in-process (the
`[demo]` extra).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from edged.config import EdgedConfig
from edged.zoo.manifest import default_zoo_path

DEMO_CLIP = Path(__file__).resolve().parent / "vtest_10s.mp4"
DEMO_PORT = 1883


def demo_config() -> EdgedConfig:
    state = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "edged"
    broker = "external" if broker_listening("127.0.0.1", DEMO_PORT) else "embedded"
    return EdgedConfig.model_validate(
        {
            "source": {"type": "file", "path": str(DEMO_CLIP), "loop": True, "realtime": True},
            "zoo": {"path": str(default_zoo_path())},
            "governor": {"mission_minutes": 10, "fps_target": 5, "fps_min": 1, "min_dwell_s": 5},
            # the shipped family's scores estimate box overlap and run lower than COCO models' (MODEL_CARD.md)
            "detection": {"score_threshold": 0.25},
            # A small battery, so that the 10-minute demo mission makes the governor choose.
            "power": {"sources": [{"type": "simulated", "capacity_wh": 0.6, "start_pct": 100, "idle_w": 2.0}]},
            "mqtt": {
                "broker": broker,
                "host": "localhost",
                "port": DEMO_PORT,
                "device_id": "demo",
                "outbox_path": str(state / "demo-outbox.sqlite3"),
            },
        }
    )


def broker_listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
