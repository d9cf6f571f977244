"""Memory: RSS with the whole zoo warm, and its growth over a soak of the real daemon.

    .venv/bin/python -m bench.bench_memory [--zoo model_zoo] [--soak-minutes 10] [--switch-every 5]

Whole zoo warm: in this process, an InferenceWorker with a warm slot for every variant runs the demo clip while
each variant is requested in turn, so that at the end every one is loaded and has run frames. RSS is read before
the first load (imports done, frames flowing through nothing yet) and after each variant.

Soak: `python -m edged run` as its own process, the clip read as fast as possible (file source, realtime: false,
loop), detections at QoS 1 to a local mosquitto, a subscriber checking every frame, and a `set/variant` command
every `--switch-every` seconds cycling through the whole zoo (the daemon keeps two warm standbys, so the cycle
loads and evicts sessions: the path where a leak would be). The daemon's RSS is sampled at the end of each cycle,
when the same variants are loaded. Growth = (last cycle's RSS - the RSS after the warm-up) / the RSS after the
warm-up (target < 5%). The warm-up is the first fifth of the soak, and at least 90 s: the first cycle loads each
variant for the first time, and the energy meter's window of per-frame records fills up over its 60 s horizon.
After that, in an instrumented soak (exploratory, not part of this bench), the daemon's threads (18), Python objects
(75-77 thousand) and the bytes malloc had handed out (43-64 MB, by mallinfo2, depending on which sessions were
loaded) stayed level; what moved RSS was the C heap. glibc kept an evicted session's freed chunks in its arenas,
between live ones, spread over a dozen arenas (a busy thread gets its own, and every load starts new session
threads): RSS ratcheted up 11-12% in 10 minutes (this bench, before the fix). Since `edged run` caps the
arenas at 2 and the worker trims the heap after each load (edged.worker: limit_malloc_arenas,
release_freed_memory), RSS moves only with which sessions are loaded. At the end the daemon is stopped with
SIGTERM and every frame it processed must have reached the subscriber, in order.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as mqtt
import psutil
import yaml

from bench.report import DEFAULT_ZOO, DEMO_CLIP, ROOT, Outcome, Reporter, add_common_arguments, heading
from edged.config import FileSource
from edged.sources import FrameProducer, FrameQueue
from edged.vision.engines import EngineOptions
from edged.worker import InferenceWorker
from edged.zoo.manifest import Zoo, load_zoo

GROWTH_TARGET_PCT = 5.0
MIN_WARMUP_S = 90.0
DEVICE = "soak"
MB = 1024 * 1024


# --- the whole zoo warm -------------------------------------------------------------------------------------------


def rss_bytes(pid: int | None = None) -> int:
    return int(psutil.Process(pid or os.getpid()).memory_info().rss)


def zoo_warm_rss(reporter: Reporter, zoo: Zoo) -> None:
    heading(f"RSS with the whole zoo warm ({len(zoo.variants)} variants, one worker, a warm slot each)")
    variants = [v.id for v in zoo.variants]
    done = {"frames": 0}
    queue = FrameQueue(2, drop_oldest=False)
    producer = FrameProducer(FileSource(type="file", path=DEMO_CLIP, realtime=False, loop=True), queue)
    worker = InferenceWorker(
        lambda v: zoo.open_detector(v, EngineOptions()),
        queue,
        lambda _result: done.__setitem__("frames", done["frames"] + 1),
        warm_slots=len(variants),
    )
    baseline = rss_bytes()
    worker.start(variants[0])
    producer.start()
    steps = []
    for variant in variants:
        worker.request(variant)
        deadline = time.monotonic() + 120
        while worker.active_variant != variant and time.monotonic() < deadline:
            time.sleep(0.02)
        frames = done["frames"]
        while done["frames"] < frames + 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        steps.append((variant, rss_bytes()))
    warm = sorted(worker.warm_variants)
    queue.close()
    producer.stop()
    worker.stop()
    model_bytes = sum(zoo.file_of(v).stat().st_size for v in zoo.variants)
    previous = baseline
    for number, (variant, rss) in enumerate(steps):
        note = " (with the runtime's own start-up and the frames in flight)" if number == 0 else ""
        print(f"  {variant}: +{(rss - previous) / MB:.1f} MB{note}", flush=True)
        previous = rss
    total = steps[-1][1]
    reporter.add(
        Outcome(
            "RSS with the whole zoo warm",
            total / MB,
            unit="MB",
            detail=(
                f"{len(warm)}/{len(variants)} variants loaded; {baseline / MB:.0f} MB before any model, "
                f"+{(total - baseline) / MB:.0f} MB for the models = {(total - baseline) / model_bytes:.1f}x their "
                f"{model_bytes / MB:.1f} MB of files"
            ),
        )
    )


# --- the soak -----------------------------------------------------------------------------------------------------


class FrameWatcher:
    """Subscribes to the daemon's detections and command results; tracks first-seen frames and their order."""

    def __init__(self, host: str, port: int) -> None:
        self.newest = -1
        self.gaps: list[tuple[int, int]] = []  # (expected, got) where a first-seen frame skipped ahead
        self.results: list[bytes] = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="soak-watcher")
        self.client.on_connect = lambda c, *_a: c.subscribe(
            [(f"edged/{DEVICE}/detections", 1), (f"edged/{DEVICE}/set/variant/result", 1)]
        )
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise SystemExit("bench: the soak's subscriber could not subscribe")

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.topic.endswith("/result"):
            self.results.append(bytes(message.payload))
            return
        frame = int(message.payload.split(b'"frame":')[1].split(b",")[0])
        if frame > self.newest:
            if frame != self.newest + 1:
                self.gaps.append((self.newest + 1, frame))
            self.newest = frame

    def switch_to(self, variant: str) -> None:
        self.client.publish(f"edged/{DEVICE}/set/variant", variant, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class SoakResult:
    minutes: float
    cycle_rss: list[int] = field(default_factory=list)  # RSS at the end of each cycle
    cycle_frames: list[int] = field(default_factory=list)  # frames published during each cycle
    warmup_cycles: int = 1
    processed: int = 0  # what the daemon said it processed, on its clean stop
    newest_seen: int = -1
    gaps: list[tuple[int, int]] = field(default_factory=list)
    commands_refused: int = 0
    exit_code: int | None = None

    @property
    def growth_pct(self) -> float:
        baseline = self.cycle_rss[self.warmup_cycles - 1]
        return 100.0 * (self.cycle_rss[-1] - baseline) / baseline

    @property
    def frames_lost(self) -> int:
        return max(0, self.processed - 1 - self.newest_seen) + sum(got - expected for expected, got in self.gaps)


def soak_config(zoo: Path, port: int, workdir: Path) -> dict[str, object]:
    return {
        "source": {"type": "file", "path": str(DEMO_CLIP), "realtime": False, "loop": True},
        "zoo": {"path": str(zoo.resolve())},
        "mqtt": {
            "host": "127.0.0.1",
            "port": port,
            "device_id": DEVICE,
            "discovery_prefix": None,
            "outbox_path": str(workdir / "outbox.sqlite3"),
        },
    }


def run_soak(zoo: Path, minutes: float, switch_every_s: float, workdir: Path, progress: bool = True) -> SoakResult:
    """Run the daemon for `minutes`, cycling through every variant; see the module docstring."""
    from tests.mqtt_broker import Mosquitto

    variants = [v.id for v in load_zoo(zoo, verify_files=False).variants]
    cycle_s = switch_every_s * len(variants)
    warmup_cycles = max(1, math.ceil(max(MIN_WARMUP_S, minutes * 60 / 5) / cycle_s))
    cycles = max(warmup_cycles + 2, round(minutes * 60 / cycle_s))
    result = SoakResult(minutes=cycles * cycle_s / 60, warmup_cycles=warmup_cycles)
    with Mosquitto(workdir / "broker") as broker:
        config_path = workdir / "edged.yaml"
        config_path.write_text(yaml.safe_dump(soak_config(zoo, broker.port, workdir)))
        watcher = FrameWatcher(broker.host, broker.port)
        with open(workdir / "edged.log", "wb") as log:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "edged", "run", "-c", str(config_path)], cwd=ROOT, stdout=log, stderr=log
            )
            try:
                _drive(daemon, watcher, variants, cycles, switch_every_s, result, progress)
                daemon.send_signal(signal.SIGTERM)
                result.exit_code = daemon.wait(60)
            finally:
                if daemon.poll() is None:
                    daemon.kill()
                    daemon.wait()
        time.sleep(1.0)  # the last acknowledged messages reach the subscriber
        watcher.close()
    text = (workdir / "edged.log").read_text(errors="replace")
    stopped = re.search(r"stopped after (\d+) frames", text)
    result.processed = int(stopped.group(1)) if stopped else 0
    result.newest_seen, result.gaps = watcher.newest, watcher.gaps
    result.commands_refused = sum(b'"ok":false' in r for r in watcher.results)
    return result


def _drive(
    daemon: subprocess.Popen[bytes],
    watcher: FrameWatcher,
    variants: list[str],
    cycles: int,
    switch_every_s: float,
    result: SoakResult,
    progress: bool,
) -> None:
    deadline = time.monotonic() + 60
    while watcher.newest < 10:
        if daemon.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"bench: the daemon published no frames (exit code {daemon.poll()})")
        time.sleep(0.1)
    started = time.monotonic()
    for cycle in range(cycles):
        frames_at_start = watcher.newest
        for variant in variants:
            watcher.switch_to(variant)
            time.sleep(switch_every_s)
            if daemon.poll() is not None:
                raise SystemExit(f"bench: the daemon exited with {daemon.returncode} during the soak")
        result.cycle_rss.append(rss_bytes(daemon.pid))
        result.cycle_frames.append(watcher.newest - frames_at_start)
        if progress:
            print(
                f"  cycle {cycle + 1}/{cycles} at {(time.monotonic() - started) / 60:.1f} min: "
                f"RSS {result.cycle_rss[-1] / MB:.1f} MB, {result.cycle_frames[-1]} frames",
                flush=True,
            )


def growth_explained(result: SoakResult) -> str:
    """Tell a leak (still rising at the end) from a high-water mark (a peak, then level or lower)."""
    measured = result.cycle_rss[result.warmup_cycles - 1 :]
    trail = ", ".join(f"{rss / MB:.0f}" for rss in measured)
    swing = max(abs(b - a) / a for a, b in itertools.pairwise(measured)) if len(measured) > 1 else 0.0
    peak = measured.index(max(measured))
    last_third = measured[-max(2, len(measured) // 3) :]
    if peak < len(measured) - 1 and last_third[-1] <= last_third[0]:
        return (
            f"RSS at each cycle's end after the warm-up (MB): {trail}. It peaked at cycle "
            f"{peak + result.warmup_cycles} and did not rise over the last third, while consecutive cycles, with "
            f"the same sessions loaded, differ by up to {swing:.0%}: too short a soak to tell a slow leak from the "
            "allocator's high-water mark. Rerun longer (make bench SOAK_MINUTES=60)"
        )
    return (
        f"RSS at each cycle's end after the warm-up (MB): {trail}: still rising at the end. Look for sessions not "
        "released on eviction (InferenceWorker._evict), state that grows per frame or per switch, or a C library "
        "other than glibc (edged.worker's malloc_trim and arena cap are then no-ops)"
    )


def report_soak(reporter: Reporter, result: SoakResult) -> None:
    baseline = result.cycle_rss[result.warmup_cycles - 1]
    reporter.add(
        Outcome(
            f"daemon RSS growth over a {result.minutes:.1f}-minute soak",
            result.growth_pct,
            GROWTH_TARGET_PCT,
            at_least=False,
            unit="%",
            detail=(
                f"{baseline / MB:.1f} MB after {result.warmup_cycles} warm-up cycle(s) -> "
                f"{result.cycle_rss[-1] / MB:.1f} MB after {len(result.cycle_rss)} cycles; peak "
                f"{max(result.cycle_rss) / MB:.1f} MB"
            ),
            why_missed=growth_explained(result),
        )
    )
    measured = result.cycle_frames[result.warmup_cycles :] or result.cycle_frames
    reporter.add(
        Outcome(
            "soak throughput, last cycle / median cycle",
            result.cycle_frames[-1] / statistics.median(measured),
            detail=f"{result.processed} frames in all, median {statistics.median(measured):.0f} per cycle",
        )
    )
    reporter.add(
        Outcome(
            "frames lost over the soak",
            result.frames_lost,
            0,
            at_least=False,
            unit="frames",
            detail=(
                f"{result.processed} processed, newest seen {result.newest_seen}, exit code {result.exit_code}, "
                f"{result.commands_refused} variant command(s) refused"
            ),
            why_missed=f"first-seen frames skipped ahead at {result.gaps[:5]} (expected, got)",
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", type=Path, default=DEFAULT_ZOO)
    parser.add_argument("--soak-minutes", type=float, default=10.0, help="0: skip the soak")
    parser.add_argument("--switch-every", type=float, default=5.0, help="seconds between variant commands")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    reporter = Reporter("memory")
    zoo_warm_rss(reporter, load_zoo(args.zoo))
    if args.soak_minutes > 0:
        heading(f"soak: the daemon for {args.soak_minutes:g} min, a variant switch every {args.switch_every:g} s")
        with tempfile.TemporaryDirectory(prefix="edged-bench-soak-") as tmp:
            result = run_soak(args.zoo, args.soak_minutes, args.switch_every, Path(tmp))
        report_soak(reporter, result)
    reporter.write(args.outcomes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
