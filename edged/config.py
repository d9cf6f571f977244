"""The whole edged YAML config, as pydantic models.

Unknown keys are errors (a typo must never be silently ignored), `${VAR}` / `${VAR:-default}` come from the
environment, and every error names the field path and the line. Relative paths are relative to the config file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from edged.governor.config import GovernorConfig
from edged.power.config import PowerConfig
from edged.tracking.config import TrackingConfig
from edged.vision.engines.base import EngineOptions
from edged.vision.postprocess import PostprocessOptions
from edged.yamlfile import Problem, load_yaml


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- source -------------------------------------------------------------------------------------------------------


class _SourceBase(_Section):
    queue_size: int = Field(2, ge=1, le=64, description="frames buffered for inference; the oldest is dropped")
    reconnect_initial_s: float = Field(1.0, gt=0, description="first retry delay when the source drops")
    reconnect_max_s: float = Field(30.0, gt=0, description="retry delay cap (exponential backoff)")


class CameraSource(_SourceBase):
    type: Literal["camera"]
    device: int | str = Field(0, description="V4L2 index or path, e.g. 0 or /dev/video0")
    width: int | None = Field(None, gt=0)
    height: int | None = Field(None, gt=0)
    fps: float | None = Field(None, gt=0)


class FileSource(_SourceBase):
    type: Literal["file"]
    path: Path
    loop: bool = False
    realtime: bool = Field(True, description="pace frames at the video's own fps (False: as fast as possible)")


class StreamSource(_SourceBase):
    type: Literal["stream"]
    url: str = Field(pattern=r"^(rtsp|rtsps|http|https|rtmp|udp|tcp)://", description="RTSP / HTTP / ... URL")


class FolderSource(_SourceBase):
    type: Literal["folder"]
    path: Path
    fps: float = Field(1.0, gt=0)
    loop: bool = False


class GStreamerSource(_SourceBase):
    type: Literal["gstreamer"]
    pipeline: str = Field(min_length=1, description="a GStreamer pipeline ending in appsink")


SourceConfig = Annotated[
    CameraSource | FileSource | StreamSource | FolderSource | GStreamerSource, Field(discriminator="type")
]


# --- zoo, governor, power, mqtt, logging --------------------------------------------------------------------------


class ZooConfig(_Section):
    path: Path = Field(Path("model_zoo"), description="directory holding zoo.yaml")
    variant: str | None = Field(None, description="variant to start with (the governor may switch)")
    device_class: str | None = Field(None, description="profile key to read; default: detected from the CPU")


class TlsConfig(_Section):
    ca_certs: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    insecure: bool = Field(False, description="skip hostname verification (testing only)")

    @model_validator(mode="after")
    def _cert_and_key(self) -> TlsConfig:
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("certfile and keyfile go together (client certificate authentication)")
        return self


class MqttConfig(_Section):
    enabled: bool = True
    broker: Literal["external", "embedded"] = Field(
        "external", description="embedded: start an MQTT 3.1.1 broker in-process (demo; needs the [demo] extra)"
    )
    host: str = "localhost"
    port: int = Field(1883, ge=1, le=65535)
    protocol: Literal["5", "3.1.1"] = "5"
    client_id: str | None = None
    username: str | None = None
    password: SecretStr | None = Field(
        None, description="use ${MQTT_PASSWORD} to keep it out of the file; printed as ********** everywhere"
    )
    tls: TlsConfig | None = None
    keepalive_s: int = Field(30, ge=5, le=3600)
    topic_prefix: str = Field("edged", pattern=r"^[^#+]+$")
    device_id: str = Field("edged", pattern=r"^[A-Za-z0-9_-]+$")
    detections_qos: Literal[0, 1, 2] = 1
    discovery_prefix: str | None = Field("homeassistant", description="Home Assistant discovery; null disables")
    outbox_path: Path = Field(Path("outbox.sqlite3"), description="durable queue of unacknowledged messages")
    outbox_max_messages: int = Field(100_000, ge=100)
    max_command_bytes: int = Field(4096, ge=64, le=1_048_576, description="larger command payloads are refused")


class MetricsConfig(_Section):
    """Prometheus endpoint (the [metrics] extra); off by default and on loopback: it has no authentication."""

    enabled: bool = False
    host: str = Field("127.0.0.1", description="address to listen on; 0.0.0.0 exposes it to the network")
    port: int = Field(9464, ge=0, le=65535, description="0: any free port (tests)")


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = Field("text", description="json: one object per line, for journald/Loki")


class EdgedConfig(_Section):
    source: SourceConfig
    zoo: ZooConfig = Field(default_factory=ZooConfig)
    engine: EngineOptions = Field(default_factory=EngineOptions)
    detection: PostprocessOptions = Field(default_factory=PostprocessOptions)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    governor: GovernorConfig = Field(default_factory=GovernorConfig)
    power: PowerConfig = Field(default_factory=PowerConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    def resolved(self, base: Path, state_base: Path | None = None) -> EdgedConfig:
        """Relative paths made relative to `base` (the config file's directory); the outbox's relative to
        `state_base` when given (systemd's $STATE_DIRECTORY: /etc is read-only for the service)."""

        def fix(p: Path, against: Path = base) -> Path:
            return p if p.is_absolute() else (against / p)

        update: dict[str, BaseModel] = {
            "zoo": self.zoo.model_copy(update={"path": fix(self.zoo.path)}),
            "mqtt": self.mqtt.model_copy(update={"outbox_path": fix(self.mqtt.outbox_path, state_base or base)}),
        }
        if isinstance(self.source, FileSource | FolderSource):
            update["source"] = self.source.model_copy(update={"path": fix(self.source.path)})
        return self.model_copy(update=update)


def missing_paths(config: EdgedConfig, path: str | Path) -> list[str]:
    """Files and folders the config names that are not on this machine, each with its line: errors for `edged run`,
    warnings for `edged config check` (which may validate a config meant for another machine)."""
    from edged.zoo.manifest import MANIFEST_NAME

    document = load_yaml(Path(path))

    def problem(loc: tuple[str, str], message: str) -> str:
        return str(Problem(str(path), document.line_of(loc), ".".join(loc), message))

    found = []
    if isinstance(config.source, FileSource) and not config.source.path.is_file():
        found.append(problem(("source", "path"), f"no such file: {config.source.path}"))
    if isinstance(config.source, FolderSource) and not config.source.path.is_dir():
        found.append(problem(("source", "path"), f"no such folder: {config.source.path}"))
    if not (config.zoo.path / MANIFEST_NAME).is_file():
        found.append(problem(("zoo", "path"), f"no {MANIFEST_NAME} in {config.zoo.path}"))
    return found


def load_config(path: str | Path) -> EdgedConfig:
    """Load, validate and resolve a config file. Raises ConfigError listing every problem with its line."""
    path = Path(path)
    config = load_yaml(path).validate(EdgedConfig)
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return config.resolved(path.resolve().parent, Path(state) if state else None)
