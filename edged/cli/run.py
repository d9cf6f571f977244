"""`edged run`: the daemon."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

SYSTEM_CONFIG = Path("/etc/edged/edged.yaml")  # where deploy/install.sh puts it


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "run",
        help="the daemon: frames in, governed inference, detections out over MQTT",
        description="Run the daemon. With --config, the YAML file (see `edged config check`); without, the file "
        f"$EDGED_CONFIG names, else {SYSTEM_CONFIG} when it exists, else the "
        "embedded demo: the shipped model zoo on the bundled clip, a simulated battery, MQTT on localhost:1883 "
        "(a running broker, or one started in-process). Watch it with `edged watch --device demo`. "
        "SIGTERM/SIGINT stop cleanly (availability `stopped`, outbox flushed); SIGHUP reloads the config.",
    )
    p.add_argument(
        "-c",
        "--config",
        type=Path,
        help=f"config file (default: $EDGED_CONFIG, else {SYSTEM_CONFIG} if present, else the embedded demo)",
    )
    p.set_defaults(handler=_run)


def config_to_run(given: Path | None) -> tuple[Path | None, str]:
    """The config file `edged run` runs, and why: -c, else $EDGED_CONFIG, else the system one when it exists, else
    None, the embedded demo. A file named by -c or $EDGED_CONFIG must exist; the system one is only looked for."""
    from edged.errors import ConfigError

    if given is not None:
        return given, "-c"
    if named := os.environ.get("EDGED_CONFIG"):
        if not Path(named).is_file():
            raise ConfigError([f"{named}: file not found (named by $EDGED_CONFIG)"])
        return Path(named), "$EDGED_CONFIG"
    try:
        present = SYSTEM_CONFIG.is_file()
    except PermissionError:  # /etc/edged is root:edged 0750: this user may not look, and must not get the demo
        raise ConfigError([f"{SYSTEM_CONFIG}: permission denied (run as the edged user, or give -c FILE)"]) from None
    if present:
        return SYSTEM_CONFIG, f"no -c or $EDGED_CONFIG, {SYSTEM_CONFIG} exists"
    return None, f"no -c, $EDGED_CONFIG or {SYSTEM_CONFIG}"


def _run(args: argparse.Namespace) -> int:
    from edged.config import load_config, missing_paths
    from edged.daemon import run_daemon
    from edged.demo import demo_config
    from edged.errors import ConfigError
    from edged.logs import configure_logging

    path, why = config_to_run(args.config)
    config = load_config(path) if path else demo_config()
    configure_logging(config.logging.level, config.logging.format)  # so that the choice is logged as the daemon logs
    log.info("config: %s (%s)", path or "the embedded demo", why)
    if path and (missing := missing_paths(config, path)):
        raise ConfigError(missing)  # not a clean stop at the first frame: systemd restarts a failure
    if config.mqtt.enabled and config.mqtt.broker == "embedded":
        return _with_embedded_broker(config, path)
    if not path:
        print(f"edged demo: publishing to the broker on localhost:{config.mqtt.port}; watch: edged watch --device demo")
    return run_daemon(config, path)


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
