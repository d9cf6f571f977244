"""A daemon stand-in for the kill -9 tests: publishes detections through MqttLink in its own process.

    python -m tests.mqtt.publisher_process CONFIG_JSON FIRST COUNT {hang,stop}

Prints `entered <frame>` (flushed) after each publish_detections() returns, i.e. once the message is durable in
the outbox. `hang`: then wait to be killed. `stop`: flush and stop cleanly, then print `stopped <outbox depth>`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from edged.config import MqttConfig
from edged.mqtt.link import MqttLink
from tests.mqtt.conftest import detection


def main(config_path: str, first: int, count: int, then: str) -> None:
    config = MqttConfig.model_validate(json.loads(Path(config_path).read_text()))
    link = MqttLink(config, on_command=lambda _command: None)
    link.start()
    for frame in range(first, first + count):
        link.publish_detections(detection(frame, config.device_id))
        print(f"entered {frame}", flush=True)
    if then == "stop":
        link.flush(timeout_s=30)
        depth = link.outbox_depth
        link.stop()
        print(f"stopped {depth}", flush=True)
    else:
        print("hanging", flush=True)
        time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
