"""Small test helpers that are not fixtures."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families


def iou(a: np.ndarray | tuple, b: np.ndarray | tuple) -> float:
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return inter / union if union > 0 else 0.0


def yolo_boxes(label_file: Path, width: int, height: int) -> list[tuple[int, tuple[float, float, float, float]]]:
    """(class, xyxy pixels) for every line of a YOLO label file."""
    out = []
    for line in label_file.read_text().splitlines():
        c, cx, cy, w, h = line.split()[:5]
        cx, cy, w, h = float(cx) * width, float(cy) * height, float(w) * width, float(h) * height
        out.append((int(c), (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)))
    return out


def write_manifest(directory: Path, text: str) -> Path:
    path = directory / "zoo.yaml"
    path.write_text(text)
    return path


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A Prometheus scrape of 127.0.0.1:port, parsed by prometheus_client's own parser: (name, labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in scrape_families(port).values()
        for sample in family.samples
    }


def scrape_value(families: dict[str, Metric], name: str) -> float:
    """The value of a family that has one sample (a counter's `_total`, a gauge)."""
    (value,) = [s.value for s in families[name].samples if not s.name.endswith("_created")]
    return value


def scrape_families(port: int) -> dict[str, Metric]:
    """The same scrape as metric families (name without suffix -> family, with its type), as a server reads it."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


class NotifySocket:
    """A unix datagram socket where the daemon's sd_notify messages arrive, as systemd's would."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="edged-notify-")  # short: a socket path has at most 107 bytes
        self.path = os.path.join(self.directory, "notify")
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(self.path)
        self.messages: list[dict[str, str]] = []

    def wait_for(
        self,
        predicate: Callable[[dict[str, str]], bool],
        timeout_s: float,
        what: str,
        log: Path | None = None,
        after: int = -1,
    ) -> int:
        """Index of the first message after index `after` (received already or arriving) that satisfies `predicate`."""
        deadline = time.monotonic() + timeout_s
        seen = after + 1
        while True:
            for index in range(seen, len(self.messages)):
                if predicate(self.messages[index]):
                    return index
            seen = len(self.messages)
            left = deadline - time.monotonic()
            if left <= 0:
                tail = f"; daemon log:\n{log.read_text(errors='replace')[-3000:]}" if log is not None else ""
                raise AssertionError(f"no {what} within {timeout_s} s; got {self.messages[-5:]}{tail}")
            self._receive(left)

    def receive_for(self, seconds: float) -> list[dict[str, str]]:
        """Every message that arrives in the next `seconds`."""
        first = len(self.messages)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._receive(left)
        return self.messages[first:]

    def _receive(self, timeout_s: float) -> None:
        self.socket.settimeout(timeout_s)
        try:
            data = self.socket.recv(4096)
        except TimeoutError:
            return
        self.messages.append(dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line))

    def close(self) -> None:
        self.socket.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def with_a_loud_stem_channel(model: Any, factor: float = 30.0) -> Any:
    """A copy of the family's ReLU network computing the same function with one channel of the stem's output
    `factor` times louder and its reader compensating: what the ReLU sibling looked like before the factory stored
    it equalized (one stem channel reached 129 where the median channel stayed under 8). Needs torch."""
    import copy

    import torch

    model = copy.deepcopy(model)
    stem, reader = model.backbone.stem[0], model.backbone.dark2[0][0][0]
    with torch.no_grad():
        stem.weight[0] *= factor
        stem.bias[0] *= factor
        reader.weight[0] /= factor
    return model
