"""`edged watch`: subscribe to what devices publish and print it, readable or as JSON lines."""

from __future__ import annotations

import argparse
import os
import threading
from pathlib import Path
from typing import Any

from edged.cli.args import positive_int


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "watch",
        help="print what a device publishes over MQTT",
        description="Subscribe to <prefix>/<device>/# and print each message: one line per detection (frame, "
        "variant, latency, objects), state changes, governor decisions, command results, availability. "
        "--json prints every message as a JSON line {received_at, device, kind, payload}.",
    )
    p.add_argument(
        "--broker",
        help="mqtt://[user:pass@]host[:port] or mqtts://... (default: mqtt://localhost:1883, or the --config's)",
    )
    p.add_argument("--device", help="device id (default: every device under the prefix)")
    p.add_argument("--prefix", help="topic prefix (default: edged, or the --config's)")
    p.add_argument("-c", "--config", type=Path, help="take broker, credentials, TLS and prefix from an edged config")
    p.add_argument("--ca-certs", type=Path, help="CA bundle for mqtts:// (default: the system's)")
    p.add_argument("--json", action="store_true", help="one JSON line per message")
    p.add_argument("--count", type=positive_int, help="exit after this many printed messages")
    p.add_argument("--timeout", type=float, help="exit after this many seconds")
    p.set_defaults(handler=_run_watch)


def _run_watch(args: argparse.Namespace) -> int:
    import paho.mqtt.client as mqtt

    from edged.errors import EdgedError
    from edged.mqtt.watch import Describer, json_line, split_topic

    settings = _settings(args)
    prefix, device = settings["prefix"], args.device or "+"
    describer = Describer()
    printed = 0
    done = threading.Event()
    failure: list[str] = []

    def on_connect(client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            failure.append(f"the broker refused the connection: {reason}")
            done.set()
            return
        client.subscribe(f"{prefix}/{device}/#", qos=1)

    def on_message(_client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        nonlocal printed
        received = split_topic(message.topic, prefix, bytes(message.payload))
        if received is None or done.is_set():
            return
        line = json_line(received) if args.json else describer.line(received)
        if line is None:
            return
        print(line, flush=True)
        printed += 1
        if args.count and printed >= args.count:
            done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"edged-watch-{os.getpid()}")
    if settings["username"]:
        client.username_pw_set(settings["username"], settings["password"])
    if settings["tls"]:
        client.tls_set(ca_certs=settings["ca_certs"], certfile=settings["certfile"], keyfile=settings["keyfile"])
        client.tls_insecure_set(settings["insecure"])
    client.on_connect = on_connect
    client.on_message = on_message
    try:
        client.connect(settings["host"], settings["port"], keepalive=30)
    except OSError as exc:
        raise EdgedError(f"cannot connect to the broker at {settings['host']}:{settings['port']}: {exc}") from None
    client.loop_start()
    try:
        done.wait(args.timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    if failure:
        raise EdgedError(failure[0])
    return 0


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """Connection settings: defaults, then the --config's mqtt section, then --broker / --prefix / --ca-certs."""
    from edged.mqtt.watch import parse_broker_url

    settings: dict[str, Any] = {
        "host": "localhost",
        "port": 1883,
        "tls": False,
        "username": None,
        "password": None,
        "ca_certs": None,
        "certfile": None,
        "keyfile": None,
        "insecure": False,
        "prefix": "edged",
    }
    if args.config:
        from edged.config import load_config

        mqtt_config = load_config(args.config).mqtt
        settings.update(
            host=mqtt_config.host,
            port=mqtt_config.port,
            username=mqtt_config.username,
            password=mqtt_config.password.get_secret_value() if mqtt_config.password is not None else None,
            prefix=mqtt_config.topic_prefix,
        )
        if mqtt_config.tls is not None:
            tls = mqtt_config.tls
            settings.update(
                tls=True,
                ca_certs=_text(tls.ca_certs),
                certfile=_text(tls.certfile),
                keyfile=_text(tls.keyfile),
                insecure=tls.insecure,
            )
    if args.broker:
        address = parse_broker_url(args.broker)
        settings.update(host=address.host, port=address.port, tls=address.tls)
        if address.username is not None:
            settings.update(username=address.username, password=address.password)
    if args.prefix:
        settings["prefix"] = args.prefix.rstrip("/")
    if args.ca_certs:
        settings.update(tls=True, ca_certs=str(args.ca_certs))
    if settings["username"] and settings["password"] is None:
        settings["password"] = os.environ.get("MQTT_PASSWORD")
    if args.device and ("/" in args.device or "#" in args.device):
        from edged.errors import EdgedError

        raise EdgedError(f"--device {args.device}: one device id, without / or #")
    return settings


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)
