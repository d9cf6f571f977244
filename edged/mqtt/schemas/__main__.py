"""`python -m edged.mqtt.schemas [--check]`: regenerate (or check) the committed MQTT payload schemas."""

from __future__ import annotations

import argparse
import sys

from edged.mqtt.schemas import SCHEMA_DIR, stale, write_all


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m edged.mqtt.schemas", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed schema is out of date")
    args = parser.parse_args()
    if args.check:
        outdated = stale()
        for name in outdated:
            print(f"{SCHEMA_DIR}/{name}.schema.json is out of date: run python -m edged.mqtt.schemas", file=sys.stderr)
        return 1 if outdated else 0
    for path in write_all():
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
