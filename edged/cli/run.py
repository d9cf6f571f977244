"""`edged run`: the daemon."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "run",
        help="the daemon: frames in, governed inference, detections out over MQTT",
        description="Run the daemon. With --config, the YAML file (see `edged config check`); without, the "
        "embedded demo: the shipped model zoo on the bundled clip, a simulated battery, MQTT on localhost:1883 "
        "(a running broker, or one started in-process). Watch it with `edged watch --device demo`. "
        "SIGTERM/SIGINT stop cleanly (availability `stopped`, outbox flushed); SIGHUP reloads the config.",
    )
    p.add_argument("-c", "--config", type=Path, help="config file (default: the embedded demo)")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from edged.config import load_config, missing_paths
    from edged.daemon import run_daemon
    from edged.demo import demo_config
    from edged.errors import ConfigError

    config = load_config(args.config) if args.config else demo_config()
    if args.config and (missing := missing_paths(config, args.config)):
        raise ConfigError(missing)  # not a clean stop at the first frame: systemd restarts a failure
    if config.mqtt.enabled and config.mqtt.broker == "embedded":
        return _with_embedded_broker(config, args.config)
    if not args.config:
        print(f"edged demo: publishing to the broker on localhost:{config.mqtt.port}; watch: edged watch --device demo")
    return run_daemon(config, args.config)


def _with_embedded_broker(config, path) -> int:
    from edged.daemon import run_daemon
    from edged.errors import MissingExtraError
    from edged.mqtt.broker import EmbeddedBroker

    try:
        broker = EmbeddedBroker.for_config(config.mqtt).start()
    except MissingExtraError as exc:
        if path is not None:  # a config that asks for the broker gets it or an error, never a silent fallback
            raise
        log.warning("%s; detections go to stdout instead", exc)
        return run_daemon(config.model_copy(update={"mqtt": config.mqtt.model_copy(update={"enabled": False})}), path)
    print(
        f"edged: MQTT broker started in-process on localhost:{config.mqtt.port}; "
        f"watch: edged watch --device {config.mqtt.device_id}"
    )
    try:
        return run_daemon(config, path)
    finally:
        broker.stop()
