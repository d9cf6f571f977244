"""`edged run`: wires the pieces together and owns their lifecycle. It computes nothing itself.

Threads and what each owns:
  source     FrameProducer: reads the camera/file/stream into the FrameQueue (drop-oldest)
  inference  InferenceWorker: the detectors; the Tracker (ids, events, counts); publishes each FrameResult and its
             events into the MQTT outbox (the main thread ends the tracks once the worker has stopped)
  power      PowerSampler: readings -> PowerWindow and the EnergyMeter
  mqtt       MqttLink: outbox sender, paho network loop, command thread (commands -> the control queue)
  main       the control loop: every tick, measurements -> Governor -> variant and fps; commands; signals;
             state, stats and power messages; sd_notify
A thread that dies of an unexpected exception stops the daemon with exit status 70 (edged.threads says why).
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import numpy as np
from pydantic import ValidationError

from edged import __version__
from edged.config import EdgedConfig, FileSource, load_config
from edged.errors import ConfigError, EdgedError
from edged.frame_counter import FrameCounter
from edged.governor import AccuracyNeeds, Decision, FloorCommand, Governor, VariantProfile, profiles_from_variants
from edged.governor.config import GovernorConfig, mission_end_s
from edged.logs import configure_logging
from edged.metrics import MetricsExporter, snapshot_now
from edged.mqtt.commands import (
    Command,
    CommandRejected,
    SetAccuracyFloor,
    SetFps,
    SetGovernorMode,
    SetPaused,
    SetVariant,
)
from edged.mqtt.link import MqttLink
from edged.mqtt.messages import (
    DecisionMessage,
    DecisionSummary,
    DetectionsMessage,
    EventMessage,
    ObjectCountMessage,
    PipelineStats,
    PowerMessage,
    StateMessage,
)
from edged.mqtt.outbox import OutboxError
from edged.mqtt.topics import label_collisions
from edged.power import EnergyMeter, PowerEvent, PowerReading, PowerSampler, SimulatedBattery, SourceContext
from edged.sdnotify import Notifier, watchdog_interval_s
from edged.sources import FrameProducer, FrameQueue, SourceStatus
from edged.telemetry import FrameStats, PowerWindow, governor_inputs
from edged.threads import EXIT_THREAD_DIED, ThreadDeath, ThreadWatch
from edged.tracking import FrameTracks, Tracker
from edged.vision.detector import Detector
from edged.worker import MALLOC_ARENAS, FrameResult, InferenceWorker, WorkerEvent, limit_malloc_arenas
from edged.zoo.manifest import Zoo, load_zoo
from edged.zoo.profile import device_class as detect_device_class

log = logging.getLogger(__name__)

TICK_S = 1.0
STATS_EVERY_S = 10.0
POWER_EVERY_S = 5.0
STATE_EVERY_S = 30.0
IDLE_TRACK_EXPIRY_S = 0.5  # with no frames coming, tracks are aged this often (counts fall instead of freezing)


@dataclass
class Controls:
    """What operators set at run time (config + commands). Owned by the control loop."""

    policy: GovernorConfig
    configured_mode: str
    needs: AccuracyNeeds
    paused: bool = False


class Daemon:
    def __init__(self, config: EdgedConfig, config_path: Path | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.notifier = Notifier()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._wake = threading.Event()
        self._commands: queue.Queue[Command] = queue.Queue()
        self._faults: dict[str, str] = {}  # area (source, power, outbox, config) -> what is wrong now; on `state`
        self._faults_lock = threading.Lock()  # written from the source, sampler, inference and control threads
        self._state_changed = threading.Event()  # set by other threads: the control loop re-publishes `state`
        self._unstored = 0  # frames the outbox could not store (disk full)
        self._source_status = "starting"
        self._last_decision: DecisionSummary | None = None
        self._finished = threading.Event()
        self._exit_status = 0  # EXIT_THREAD_DIED once a thread has died of an unexpected exception
        self.frames = FrameStats()
        self.power_window = PowerWindow()
        self._energy_mj: dict[str, float] = {}  # measured energy per inference, per variant (published per frame)

        self.zoo = load_zoo(config.zoo.path)
        self.profiles, self.device_class = self._profiles(self.zoo)
        # the engine each variant opens on is the one measured fastest on this device class (engine.runtime pins one)
        self.runtime_class = self.config.zoo.device_class or detect_device_class()
        self.controls = Controls(
            config.governor, config.governor.mode, AccuracyNeeds(base=config.governor.accuracy_floor)
        )
        self.governor = Governor(config.governor, self.profiles) if self.profiles else None
        self.meter = EnergyMeter(config.power.meter)
        self.power = PowerSampler.from_config(
            config.power, SourceContext(), on_reading=self._on_power_reading, on_event=self._on_power_event
        )
        self.queue = FrameQueue(config.source.queue_size, drop_oldest=self._drops_frames())
        self.producer = FrameProducer(config.source, self.queue, self._on_source_status)
        self.worker = InferenceWorker(
            self._open_detector,
            self.queue,
            self._on_result,
            self._on_worker_event,
            meter=self.meter,
            on_idle=self._on_idle,
        )
        self.labels = self._zoo_labels()
        self._label_index = {label: i for i, label in enumerate(self.labels)}
        if config.tracking.enabled and config.mqtt.enabled and (clashes := label_collisions(self.labels)):
            raise EdgedError(f"zoo {self.zoo.path}: labels that share a count topic: {'; '.join(clashes)}")
        self.link = (
            MqttLink(config.mqtt, self._on_command, labels=self.labels, variants=[v.id for v in self.zoo.variants])
            if config.mqtt.enabled
            else None
        )
        # ids go on after the last one committed to the outbox, so a restart never gives an id out twice
        first_track = (self.link.last_published_track_id or 0) + 1 if self.link else 1
        self.tracker = Tracker(config.tracking, first_track) if config.tracking.enabled else None
        self._last_result: tuple[FrameResult, int] | None = None
        self._last_tracked_at = time.monotonic()
        self._clock_origin = (time.time(), time.monotonic())  # (result, frame number): where tracks end at stop
        self.metrics = (
            MetricsExporter(config.metrics, config.mqtt.device_id, [v.id for v in self.zoo.variants])
            if config.metrics.enabled
            else None
        )
        last_published = self.link.last_published_frame if self.link else None
        self.frame_counter = FrameCounter(self._state_dir() / "frame_counter", last_published)
        self.frame_counter.save(0)  # a crash before the first periodic save must not reuse these numbers
        self._mono_start = time.monotonic()
        self._mission_end = mission_end_s(config.governor, self._mono_start, dt.datetime.now().astimezone())

    # --- lifecycle --------------------------------------------------------------------------------------------

    def run(self) -> int:
        """Start everything, run the control loop until SIGTERM/SIGINT (or a file source ends), stop cleanly.

        Returns the exit status: 0, or EXIT_THREAD_DIED when a thread died of an unexpected exception."""
        with ThreadWatch(self._on_thread_death):
            return self._run()

    def _run(self) -> int:
        self._install_signals()
        first = self._first_variant()
        log.info(
            "edged %s starting: zoo %s (%d variants), first variant %s",
            __version__,
            self.zoo.path,
            len(self.zoo.variants),
            first,
        )
        self.worker.start(first)
        self.power.start()
        if self.tracker:  # every label at 0 first: a count retained from an earlier run is not true any more
            self._publish_counts(dict.fromkeys(self.labels, 0), None)
        if self.link:
            self.link.start()
        self._start_metrics()
        self.producer.start()
        self.notifier.ready(f"running {first}")
        try:
            self._publish_state()
            self._control_loop()
        finally:
            self._shutdown()
        return self._exit_status

    def _shutdown(self) -> None:
        self.notifier.stopping()
        log.info("stopping: finishing the frame in flight, flushing the outbox")
        self.producer.stop()
        self.queue.close()
        self.worker.stop()
        self._end_tracks()
        self.power.stop()
        self.frame_counter.save(self.frames.last_index + 1, clean=True)
        if self.link:
            self._publish_state()
            self.link.stop(clean=True, timeout_s=10.0, failed=self._exit_status != 0)
        if self.metrics:
            self.metrics.stop()
        log.info("stopped after %d frames", self.frames.processed)

    def _start_metrics(self) -> None:
        """The scrape endpoint is a side door: if it cannot open, say so on `state` and run without it."""
        if self.metrics is None:
            return
        try:
            self.metrics.start()
        except EdgedError as exc:
            log.error("%s; running without the metrics endpoint", exc)
            self._set_fault("metrics", str(exc))
            self.metrics = None
            return
        log.info("metrics at http://%s:%d/metrics", self.config.metrics.host, self.metrics.port)

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # embedded in tests: the caller stops us with request_stop()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self._reload.set()
        else:
            self._stop.set()
        self._wake.set()

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    # --- the control loop -------------------------------------------------------------------------------------

    def _control_loop(self) -> None:
        watchdog = watchdog_interval_s()
        last = {"stats": time.monotonic(), "power": time.monotonic(), "state": time.monotonic()}
        frames_at_last_ping = -1
        next_tick = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(max(0.0, next_tick - time.monotonic()))
            self._wake.clear()
            if self._reload.is_set():
                self._reload.clear()
                self._reload_config()
            if self._state_changed.is_set():
                self._state_changed.clear()
                self._publish_state()
            self._apply_commands()
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + TICK_S
                self._tick(now)
                self._update_metrics()
                if now - last["stats"] >= STATS_EVERY_S:
                    last["stats"] = now
                    self._publish_stats()
                    self.frame_counter.save(self.frames.last_index + 1)
                if now - last["power"] >= POWER_EVERY_S:
                    last["power"] = now
                    self._publish_power()
                if now - last["state"] >= STATE_EVERY_S:
                    last["state"] = now
                    self._publish_state()
                if watchdog is not None:
                    alive = self.frames.processed != frames_at_last_ping or self.controls.paused
                    alive = alive or self._source_status != "streaming"  # reconnecting is our loop working
                    if alive:
                        self.notifier.watchdog()
                    frames_at_last_ping = self.frames.processed
            if self._finished.is_set():
                log.info("the source has no more frames: stopping")
                self._stop.set()

    def _tick(self, now: float) -> None:
        period = self.frames.take_period(now)
        power = self.power_window.take_period()
        self.meter.add_sample(power.power)
        variant = period.variant or self.worker.active_variant
        if variant:
            energy = self.meter.energy_per_inference_mj(variant)
            if energy.mj is not None and energy.quality == "measured":
                self._energy_mj[variant] = energy.mj
        if self.governor is None:
            return
        quarantined = self.worker.quarantined
        usable = [p for p in self.profiles if p.id not in quarantined]
        if len(usable) != len(self.governor.variants):
            self.governor.set_variants(usable)
        needs = self.controls.needs.pruned(now)
        self.controls.needs = needs
        running = self._profile_of(variant) if variant else None
        busy_w = running.energy_mj / running.latency_p50_ms if running is not None else None
        inputs = governor_inputs(
            now, period, power, needs.floor_at(now), needs.expires_at(now), self._mission_end, busy_w
        )
        decision = self.governor.tick(inputs)
        self._apply_decision(decision)

    def _apply_decision(self, decision: Decision) -> None:
        if decision.variant is not None:
            self.worker.request(decision.variant)
        self.producer.fps_limit = decision.fps
        if decision.switched or self._last_decision is None:
            self._last_decision = DecisionSummary(
                from_variant=decision.previous_variant,
                to_variant=decision.variant,
                reason=decision.reason,
                at=time.time(),
            )
            log.info("governor: %s", decision.reason)
            if self.link:
                self.link.publish_decision(
                    DecisionMessage.from_decision(self.config.mqtt.device_id, decision, time.time())
                )
            self._publish_state()

    # --- commands (validated on the MQTT command thread, applied on the control loop) --------------------------

    def _on_command(self, command: Command) -> str | None:
        """Refuse (CommandRejected) what cannot be applied; queue the rest for the control loop. Returns a caveat
        for the answer when the command is applied but cannot have its full effect."""
        if isinstance(command, SetVariant) and command.value is not None:
            known = {v.id for v in self.zoo.variants}
            if command.value not in known:
                raise CommandRejected(f"no variant '{command.value}' (the zoo has: {', '.join(sorted(known))})")
            quarantined = self.worker.quarantined
            if command.value in quarantined:
                raise CommandRejected(f"variant '{command.value}' is quarantined: {quarantined[command.value]}")
        if isinstance(command, SetGovernorMode) and command.value == "pinned" and not self.worker.active_variant:
            raise CommandRejected("nothing to pin yet: no variant is running")
        if isinstance(command, SetFps):
            watchdog = watchdog_interval_s()  # the watchdog is fed while frames move: one must move per interval
            if watchdog is not None and command.value < 1.0 / watchdog:
                raise CommandRejected(
                    f"{command.value:g} fps is below {1.0 / watchdog:.3g} fps, one frame per {watchdog:g} s (half of "
                    "the service's WatchdogSec): systemd would take the wait between frames for a hang and restart it"
                )
        self._commands.put(command)
        self._wake.set()
        if isinstance(command, SetAccuracyFloor) and command.value is not None:
            return self._floor_unmet_text(command.value)
        return None

    def _floor_unmet_text(self, floor: float) -> str | None:
        """Why `floor` cannot be met by any variant, or None (also None without profiles: nothing to compare)."""
        best = max(self.profiles, key=lambda p: p.accuracy, default=None)
        if best is None or floor <= best.accuracy:
            return None
        return (
            f"no variant reaches mAP50-95 {floor:g}: the most accurate, {best.id}, has {best.accuracy:.3f} "
            "and runs below the floor"
        )

    def _apply_commands(self) -> None:
        changed = False
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                break
            self._apply_command(command)
            changed = True
        if changed:
            if self.governor is not None:
                self.governor.set_policy(self.controls.policy)
            self._tick(time.monotonic())
            self._publish_state()

    def _apply_command(self, command: Command) -> None:
        controls, now = self.controls, time.monotonic()
        if isinstance(command, SetGovernorMode):
            pin = controls.policy.pinned_variant or self.worker.active_variant
            controls.policy = controls.policy.model_copy(update={"mode": command.value, "pinned_variant": pin})
        elif isinstance(command, SetVariant):
            if command.value is None:
                mode = controls.configured_mode if controls.configured_mode != "pinned" else "auto"
                controls.policy = controls.policy.model_copy(update={"mode": mode})
            else:
                controls.policy = controls.policy.model_copy(update={"mode": "pinned", "pinned_variant": command.value})
                if self.governor is None:
                    self.worker.request(command.value)
        elif isinstance(command, SetAccuracyFloor):
            controls.needs = controls.needs.apply(FloorCommand(floor=command.value, for_s=command.expires_s), now)
        elif isinstance(command, SetFps):
            fps_min = min(controls.policy.fps_min, command.value)
            controls.policy = controls.policy.model_copy(update={"fps_target": command.value, "fps_min": fps_min})
            if self.governor is None:
                self.producer.fps_limit = command.value
        elif isinstance(command, SetPaused):
            controls.paused = command.value
            self.worker.pause(command.value)
            self.producer.paused = command.value

    # --- reload -----------------------------------------------------------------------------------------------

    def _reload_config(self) -> None:
        """SIGHUP: apply what can change live; an invalid file is rejected and the running config kept."""
        if self.config_path is None:
            log.warning("SIGHUP ignored: running the embedded demo config, there is no file to reload")
            return
        self.notifier.reloading()
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            fault = f"reload rejected, still running the previous config: {exc.problems[0]}"
            self._set_fault("config", fault)
            log.error("config %s (%d problems)", fault, len(exc.problems))
            self._publish_state()
            self.notifier.ready("reload rejected")
            return
        live = {"governor", "detection", "logging"}
        needs_restart = [
            name
            for name in EdgedConfig.model_fields
            if name not in live and getattr(new, name) != getattr(self.config, name)
        ]
        needs = AccuracyNeeds(base=new.governor.accuracy_floor, overrides=self.controls.needs.overrides)
        self.controls = Controls(new.governor, new.governor.mode, needs, self.controls.paused)
        if self.governor is not None:
            self.governor.set_policy(new.governor)
        old = self.config.governor
        if (new.governor.mission_minutes, new.governor.mission_end) != (old.mission_minutes, old.mission_end):
            # a new mission counts from the reload (e.g. `systemctl reload edged` at take-off)
            self._mission_end = mission_end_s(new.governor, time.monotonic(), dt.datetime.now().astimezone())
        for detector in self.worker.loaded_detectors():
            detector.postprocess = new.detection
        configure_logging(new.logging.level, new.logging.format)
        self.config = new.model_copy(update={name: getattr(self.config, name) for name in needs_restart})
        fault = f"reloaded; changed sections need a restart to apply: {', '.join(needs_restart)}"
        self._set_fault("config", fault if needs_restart else None)
        log.info("config reloaded%s", f" ({fault})" if needs_restart else "")
        self._publish_state()
        self.notifier.ready("reloaded")

    # --- callbacks from other threads -------------------------------------------------------------------------

    def _on_result(self, result: FrameResult) -> None:
        """Inference thread: deliver the frame, and time that work (the governor counts its energy per frame)."""
        begun = time.perf_counter()
        try:
            self._deliver(result)
        finally:
            self.frames.record_overhead((time.perf_counter() - begun) * 1000.0)

    def _deliver(self, result: FrameResult) -> None:
        """Account, drain the simulated battery, hand the frame to the outbox."""
        found = result.detections
        self.frames.record(result.variant, result.index, found.latency_ms, found.inference_ms, result.finished)
        simulated = self.power.source("simulated")  # opened by the sampler's first read
        if isinstance(simulated, SimulatedBattery):
            profile = self._profile_of(result.variant)
            simulated.record_inference(profile.energy_mj if profile else None)
        frame = self.frame_counter.base + result.index
        tracks = self._track(result)
        message = DetectionsMessage(
            device=self.config.mqtt.device_id,
            source=result.source,
            frame=frame,
            captured_at=result.timestamp,
            variant=result.variant,
            latency_ms=round(found.latency_ms, 2),
            energy_mj=self._energy_mj.get(result.variant),
            width=found.width,
            height=found.height,
            objects=found.objects(result.labels, tracks.track_ids if tracks else None),
        )
        if self.link is None:
            print(message.model_dump_json(by_alias=True), flush=True)
            return
        self._publish_track_counts(tracks, result, frame)  # never stored: a full disk must not freeze them
        try:
            self.link.publish_detections(message)
            self._publish_track_events(tracks, result, frame)
        except OutboxError as exc:  # disk full: this frame is lost, counted and reported; inference goes on
            self._unstored += 1
            if not self._has_fault("outbox"):
                log.error("%s: frames are not stored until it can write again", exc)
            self._set_fault("outbox", f"{exc}; {self._unstored} frames could not be stored")
            self._state_changed.set()
            self._wake.set()
            return
        if self._has_fault("outbox"):
            log.warning("the outbox stores frames again (%d were lost while it could not)", self._unstored)
            self._set_fault("outbox", None)
            self._state_changed.set()
            self._wake.set()

    def _track(self, result: FrameResult) -> FrameTracks | None:
        """Inference thread (the tracker's owner): this frame's track ids, events and count changes."""
        if self.tracker is None:
            return None
        found = result.detections
        self._last_tracked_at = time.monotonic()
        # the zoo's label index, not the variant's class id: a variant may list its labels in another order, and a
        # person must stay a person across a switch
        label_ids = np.array([self._label_index[result.labels[c]] for c in found.class_ids], dtype=np.int64)
        return self.tracker.update(found.normalised_boxes(), found.scores, label_ids, self._steady_time(result.started))

    def _steady_time(self, monotonic_s: float) -> float:
        """Unix seconds that never step: the tracker ages tracks on it (NTP setting a Pi's clock back by an hour
        must not keep every counted track alive, nor a step forward end them all)."""
        wall, mono = self._clock_origin
        return wall + (monotonic_s - mono)

    def _on_idle(self) -> None:
        """Inference thread, no frame came: tracks still age, so counts and occupancy fall when the camera is gone
        or the pipeline paused instead of freezing at their last value."""
        if self.tracker is None:
            return
        now = time.monotonic()
        if now - self._last_tracked_at < IDLE_TRACK_EXPIRY_S:
            return
        self._last_tracked_at = now
        self._publish_outside_a_frame(self.tracker.age(self._steady_time(now)))

    def _publish_outside_a_frame(self, tracks: FrameTracks, ending: bool = False) -> None:
        """Counts and events that no frame brought (tracks aged while idle, or ended at stop), filed after the last
        frame."""
        if self._last_result is None:
            return
        result, frame = self._last_result
        self._publish_track_counts(tracks, result, frame, ending)
        try:
            self._publish_track_events(tracks, result, frame)
        except OutboxError as exc:
            log.error("track end events could not be stored: %s", exc)

    def _publish_track_counts(
        self, tracks: FrameTracks | None, result: FrameResult, frame: int, ending: bool = False
    ) -> None:
        """The counts that changed with this frame (retained, not stored)."""
        if tracks is None or self.link is None:
            return
        self._last_result = (result, frame)
        self._publish_counts({self.labels[c]: n for c, n in tracks.counts.items()}, None if ending else frame)

    def _publish_track_events(self, tracks: FrameTracks | None, result: FrameResult, frame: int) -> None:
        """After the frame's detections: its track events (durable, in order with the detections; a full disk loses
        them with their frame)."""
        if tracks is None or self.link is None:
            return
        for event in tracks.events:
            self.link.publish_event(
                EventMessage.from_event(
                    self.config.mqtt.device_id, result.source, frame, result.timestamp, event, self.labels
                )
            )

    def _publish_counts(self, counts: dict[str, int], frame: int | None) -> None:
        if self.link is None:
            return
        for label, count in counts.items():
            self.link.publish_count(
                ObjectCountMessage(
                    device=self.config.mqtt.device_id, label=label, count=count, frame=frame, at=time.time()
                )
            )

    def _end_tracks(self) -> None:
        """At stop, once the inference thread is done: every counted track ends (`end`), every count goes to 0."""
        if self.tracker is not None:
            self._publish_outside_a_frame(self.tracker.finish(), ending=True)

    def _on_worker_event(self, event: WorkerEvent) -> None:
        if event.kind == "source_finished":
            self._finished.set()
            self._wake.set()
        elif event.kind == "quarantined":
            self._wake.set()  # the control loop takes the variant out of the governor's choices

    def _on_source_status(self, status: SourceStatus) -> None:
        self._source_status = status.state
        if status.state in ("streaming", "finished"):
            self._set_fault("source", None)
        else:
            self._set_fault("source", f"source {status.state}: {status.detail}")
        if status.state == "failed":
            self._finished.set()
        self._state_changed.set()
        self._wake.set()

    def _on_thread_death(self, death: ThreadDeath) -> None:
        """The dying thread (edged.threads, after logging it): `state` says which and why, and the daemon stops."""
        self._set_fault(f"thread {death.thread}", f"thread {death.thread} died: {death.error}; edged restarts")
        self._exit_status = EXIT_THREAD_DIED
        self._stop.set()
        self._wake.set()

    def _on_power_reading(self, reading: PowerReading) -> None:
        self.power_window.record(reading)

    def _on_power_event(self, event: PowerEvent) -> None:
        """Sampler thread: a source failed or came back; `state` says which and why until it is resolved."""
        if event.kind == "source_failed":
            self._set_fault("power", f"power source {event.source} unreadable: {event.reason or event.message}")
        elif event.kind == "source_recovered":
            self._set_fault("power", None)
        self._state_changed.set()
        self._wake.set()

    # --- publishing -------------------------------------------------------------------------------------------

    def _publish_state(self) -> None:
        """A broken reading must not stop the daemon: a state that does not validate is logged and skipped."""
        if not self.link:
            return
        try:
            self.link.publish_state(self._state())
        except ValidationError as exc:
            log.error("state not published, a value is out of range: %s", exc.errors(include_url=False)[0])

    def _state(self) -> StateMessage:
        now = time.monotonic()
        power = self.power_window.latest()
        needs = self.controls.needs
        expires = needs.expires_at(now)
        decision = self.governor.last if self.governor else None
        return StateMessage(
            device=self.config.mqtt.device_id,
            at=time.time(),
            variant=self.worker.active_variant,
            mode=self.controls.policy.mode if self.governor else "pinned",
            accuracy_floor=needs.floor_at(now),
            accuracy_floor_expires_at=time.time() + (expires - now) if expires is not None else None,
            accuracy_floor_unmet=self._floor_unmet_text(needs.floor_at(now)) is not None,
            fps=decision.fps if decision else self.controls.policy.fps_target,
            paused=self.controls.paused,
            battery_pct=power.battery.battery_pct if power.battery else None,
            power_w=power.power.power_w if power.power else None,
            power_quality=power.power.quality if power.power else None,
            last_decision=self._last_decision,
            quarantined=self.worker.quarantined,
            source_status="ok" if self._source_status in ("streaming", "finished") else self._source_status,
            error=self._fault_text(),
        )

    def _publish_stats(self) -> None:
        stats = self._pipeline_stats()
        outbox = f", outbox {self.link.outbox_depth}" if self.link else ""
        self.notifier.status(
            f"{self.worker.active_variant} at {stats.fps:.1f} fps, {stats.frames_processed} frames, "
            f"{stats.frames_dropped} dropped{outbox}"
        )
        if self.link:
            self.link.publish_stats(stats)

    def _update_metrics(self) -> None:
        """Every tick, not every stats message: a scrape then reads figures at most a second old."""
        if self.metrics:
            outbox = (self.link.outbox_depth, self.link.outbox_dropped) if self.link else None
            snapshot = snapshot_now(
                self._state(),
                self._pipeline_stats(),
                outbox,
                latency=self.frames.latency_histogram(),
                energy_j=self.meter.inference_energy_j(),
                switches=self.worker.switches,
            )
            self.metrics.update(snapshot)

    def _pipeline_stats(self) -> PipelineStats:
        p50, p95 = self.frames.latency_percentiles()
        return PipelineStats(
            fps=self.frames.recent_fps(time.monotonic()),
            latency_p50_ms=p50,
            latency_p95_ms=p95,
            frames_processed=self.frames.processed,
            frames_dropped=self.queue.dropped,
        )

    def _publish_power(self) -> None:
        power = self.power_window.latest()
        sample = power.power or power.battery
        if self.link and sample is not None:
            self.link.publish_power(PowerMessage.from_sample(self.config.mqtt.device_id, sample))

    # --- helpers ----------------------------------------------------------------------------------------------

    def _open_detector(self, variant: str) -> Detector:
        return self.zoo.open_detector(variant, self.config.engine, self.config.detection, self.runtime_class)

    def _first_variant(self) -> str:
        """The governor's first choice when it can decide; else the configured variant, else the zoo's default."""
        if self.governor is not None:
            self.power.step()
            now = time.monotonic()
            period = self.frames.take_period(now)
            inputs = governor_inputs(
                now, period, self.power_window.take_period(), self.controls.needs.floor_at(now), None, self._mission_end
            )
            decision = self.governor.tick(inputs)
            self._last_decision = DecisionSummary(
                from_variant=None, to_variant=decision.variant, reason=decision.reason, at=time.time()
            )
            self.producer.fps_limit = decision.fps
            if decision.variant:
                return decision.variant
        if self.config.zoo.variant:
            self.zoo.variant(self.config.zoo.variant)  # a typo fails here, naming the zoo's variants
            return self.config.zoo.variant
        return self.zoo.default_variant

    def _profiles(self, zoo: Zoo) -> tuple[list[VariantProfile], str | None]:
        """The variants' profiles for this device class; none usable -> no governor (stated in `state`)."""
        classes = sorted({key for v in zoo.variants for key in v.profiles})
        wanted = self.config.zoo.device_class or detect_device_class()
        chosen = wanted if wanted in classes else (classes[0] if classes else None)
        if chosen is None:
            log.warning("the zoo has no measured profiles: the governor is off, running one variant")
            return [], None
        if chosen != wanted:
            log.warning("no profiles for device class %s; using %s (the governor corrects them online)", wanted, chosen)
        offered = []
        for variant in zoo.variants:
            why = zoo.int8_not_faster(variant, chosen)
            if why:
                log.warning("variant %s is not offered to the governor on %s: %s", variant.id, chosen, why)
            else:
                offered.append(variant)
        try:
            return profiles_from_variants(offered, chosen), chosen
        except EdgedError as exc:
            log.warning("governor off: %s", exc)
            return [], None

    def _zoo_labels(self) -> list[str]:
        """Every label any variant of the zoo reports, in the zoo's order (one count and occupancy entity each)."""
        labels: dict[str, None] = {}
        for variant in self.zoo.variants:
            labels.update(dict.fromkeys(self.zoo.labels_of(variant)))
        return list(labels)

    def _profile_of(self, variant: str) -> VariantProfile | None:
        return next((p for p in self.profiles if p.id == variant), None)

    def _set_fault(self, area: str, text: str | None) -> None:
        with self._faults_lock:
            if text is None:
                self._faults.pop(area, None)
            else:
                self._faults[area] = text

    def _has_fault(self, area: str) -> bool:
        with self._faults_lock:
            return area in self._faults

    def _fault_text(self) -> str | None:
        with self._faults_lock:
            faults = list(self._faults.values())
        note = self._governor_note()
        return "; ".join([*faults, *([note] if note else [])]) or None

    def _governor_note(self) -> str | None:
        if self.governor is None:
            return "governor off: the zoo has no complete profiles (accuracy, latency, energy) for this device"
        return None

    def _state_dir(self) -> Path:
        return self.config.mqtt.outbox_path.parent

    def _drops_frames(self) -> bool:
        source = self.config.source
        return not (isinstance(source, FileSource) and not source.realtime)


def run_daemon(config: EdgedConfig, config_path: Path | None) -> int:
    configure_logging(config.logging.level, config.logging.format)
    if limit_malloc_arenas():  # before any thread starts; why: edged.worker.limit_malloc_arenas
        log.debug("malloc arenas capped at %d", MALLOC_ARENAS)
    return Daemon(config, config_path).run()
