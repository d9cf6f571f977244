"""Deployment: the systemd unit, deploy/install.sh, the example configs, sd_notify, the mosquitto configuration.

The unit is checked as install.sh writes it (ExecStart pointing at this environment's `edged`, which exists), by
`systemd-analyze verify` and `systemd-analyze security`, against a committed exposure bound. install.sh runs end to
end into temporary prefixes, reusing this environment through --python-env (creating a venv and installing every
dependency would take minutes); users, groups and systemctl are shimmed to prove a prefix install never calls them.
A real install (prefix /) runs as root inside a private mount namespace whose /etc and /opt are temporary copies.
The daemon runs as a process with a real NOTIFY_SOCKET and W^X memory; mosquitto runs with the shipped
configuration and ACL.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import importlib.util
import os
import re
import shutil
import signal
import ssl
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml

from edged.cli import main as edged_cli
from edged.config import TlsConfig, load_config
from tests.conftest import REFERENCE_ZOOS
from tests.helpers import NotifySocket
from tests.mqtt.conftest import Links, Recorder, detection, link_config, state, wait_until
from tests.mqtt_broker import Mosquitto, free_port

ROOT = Path(__file__).resolve().parents[1]
INSTALL_SH = ROOT / "deploy" / "install.sh"
UNIT_SOURCE = ROOT / "systemd" / "edged.service"
TEMPLATES = ROOT / "deploy" / "configs"
MOSQUITTO_DIR = ROOT / "deploy" / "mosquitto"
DEMO_CLIP = ROOT / "edged" / "demo" / "vtest_10s.mp4"

# `systemd-analyze security --offline=true` of the installed unit must not score worse than this (0 = fully
# locked down, 10 = fully exposed). 1.5 with systemd 252: what remains is what edged needs, said in the unit's
# "Not set, on purpose" comment (network access, device access through DeviceAllow=, supplementary groups,
# /proc/cpuinfo), plus RootDirectory=. Lower it when the unit gets tighter; never raise it without a reason.
SECURITY_EXPOSURE_BOUND = 1.5

# This environment: edged is installed in it (make install), so install.sh can point the unit at it.
THIS_ENV = Path(sys.prefix)
SHIMMED = ("systemctl", "useradd", "groupadd", "usermod", "userdel", "runuser", "chown")


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (.ci/run installs it)")
    return found


# --- install.sh ---------------------------------------------------------------------------------------------------


class Installer:
    """Runs deploy/install.sh with users, groups and systemctl replaced by shims that record any call."""

    def __init__(self, workdir: Path) -> None:
        self.shims = workdir / "shims"
        self.shims.mkdir(parents=True, exist_ok=True)
        self.calls = workdir / "shim-calls"
        for name in SHIMMED:
            shim = self.shims / name
            shim.write_text(f'#!/bin/sh\necho "{name} $*" >> "{self.calls}"\n')
            shim.chmod(0o755)

    def run(self, *args: str, expect: int = 0) -> str:
        env = {**os.environ, "PATH": f"{self.shims}:{os.environ['PATH']}", "MQTT_PASSWORD": "not-a-secret"}
        done = subprocess.run(
            ["bash", str(INSTALL_SH), *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        output = done.stdout + done.stderr
        assert done.returncode == expect, f"install.sh {' '.join(args)} exited {done.returncode}:\n{output}"
        return output

    def install(self, prefix: Path, *args: str, expect: int = 0) -> str:
        return self.run("--prefix", str(prefix), "--python-env", str(THIS_ENV), *args, expect=expect)

    def shim_calls(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []


def snapshot(tree: Path) -> dict[str, tuple[int, str]]:
    """Every path under `tree`: its mode and, for files, the sha256 of its content."""
    found: dict[str, tuple[int, str]] = {}
    for path in sorted(tree.rglob("*")):
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "-"
        found[str(path.relative_to(tree))] = (stat.S_IMODE(info.st_mode), digest)
    return found


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def rendered_template(name: str, prefix: Path) -> str:
    """A template with its /opt/edged and /etc/edged paths moved into `prefix`, as install.sh writes it."""
    text = (TEMPLATES / name).read_text()
    return text.replace("/opt/edged/", f"{prefix}/opt/edged/").replace("/etc/edged/", f"{prefix}/etc/edged/")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prefix install of the laptop template; its unit is what systemd-analyze looks at."""
    workdir = tmp_path_factory.mktemp("installed")
    Installer(workdir).install(workdir / "root", "--config-template", "laptop")
    return workdir / "root"


def test_install_into_a_prefix_writes_unit_config_and_secrets_and_never_touches_the_system(tmp_path: Path) -> None:
    installer, prefix = Installer(tmp_path), tmp_path / "root"
    output = installer.install(prefix, "--config-template", "pi-camera")

    unit = (prefix / "etc/systemd/system/edged.service").read_text()
    assert f"ExecStart={THIS_ENV}/bin/edged run --config {prefix}/etc/edged/edged.yaml\n" in unit
    assert f"EnvironmentFile=-{prefix}/etc/edged/edged.env\n" in unit
    assert mode_of(prefix / "etc/systemd/system/edged.service") == 0o644

    config = prefix / "etc/edged/edged.yaml"
    assert config.read_text() == rendered_template("pi-camera.yaml", prefix)
    assert mode_of(config) == 0o640 and mode_of(prefix / "etc/edged") == 0o750
    assert mode_of(prefix / "etc/edged/edged.env") == 0o600, "the secrets file is root-only"
    record = (prefix / "etc/edged/.pristine.sha256").read_text()
    assert f"{hashlib.sha256(config.read_bytes()).hexdigest()}  edged.yaml" in record
    assert f"{config}: valid" in output, "the installed config was checked"
    assert f"{config}: valid" in installer.run("--prefix", str(prefix), "--check"), "and can be checked again"

    if (ROOT / "model_zoo" / "zoo.yaml").exists():
        assert (prefix / "opt/edged/model_zoo/zoo.yaml").read_bytes() == (ROOT / "model_zoo/zoo.yaml").read_bytes()
    else:
        assert "no model_zoo/zoo.yaml yet" in output and not (prefix / "opt/edged/model_zoo").exists()

    completion = (prefix / "etc/bash_completion.d/edged").read_text()
    assert (
        "_shtab_edged_subparsers=(run detect" in completion and mode_of(prefix / "etc/bash_completion.d/edged") == 0o644
    )

    assert installer.shim_calls() == [], "a prefix install must not touch users, groups or systemd"
    assert "A real install would run:" in output
    for planned in ("groupadd --system i2c", "useradd --system", "systemctl daemon-reload", "systemctl enable edged"):
        assert planned in output


def test_reinstall_keeps_an_edited_config_and_uninstall_leaves_it(tmp_path: Path) -> None:
    installer, prefix = Installer(tmp_path), tmp_path / "root"
    config, dist = prefix / "etc/edged/edged.yaml", prefix / "etc/edged/edged.yaml.dist"
    installer.install(prefix, "--config-template", "laptop")
    edited = config.read_text().replace("fps_target: 5", "fps_target: 3")
    config.write_text(edited)

    output = installer.install(prefix, "--config-template", "laptop")
    assert config.read_text() == edited, "an edited config is never overwritten"
    assert dist.read_text() == rendered_template("laptop.yaml", prefix), "the template goes beside it"
    assert f"kept your edited {config}" in output

    before = snapshot(prefix)
    installer.install(prefix, "--config-template", "laptop")
    assert snapshot(prefix) == before, "installing again changes nothing"

    output = installer.run("--prefix", str(prefix), "--uninstall")
    assert not (prefix / "etc/systemd/system/edged.service").exists()
    assert not (prefix / "opt/edged").exists()
    assert not (prefix / "etc/bash_completion.d/edged").exists()
    assert config.read_text() == edited and not dist.exists()
    assert not (prefix / "etc/edged/edged.env").exists(), "the unedited secrets template is removed"
    assert f"kept {config}: you edited it" in output

    # The record survives with the edited file, so a later install still knows it was edited.
    output = installer.install(prefix, "--config-template", "laptop")
    assert config.read_text() == edited and dist.exists()
    assert installer.shim_calls() == []


def test_uninstall_removes_a_pristine_config_and_keeps_the_state_until_purged(tmp_path: Path) -> None:
    installer, prefix = Installer(tmp_path), tmp_path / "root"
    installer.install(prefix, "--config-template", "drone-mavlink")
    outbox = prefix / "var/lib/edged/outbox.sqlite3"
    outbox.parent.mkdir(parents=True)
    outbox.write_bytes(b"undelivered detections")

    output = installer.run("--prefix", str(prefix), "--uninstall")
    assert not (prefix / "etc/edged").exists(), "unedited files and their directory are removed"
    assert outbox.exists() and "kept" in output and "--purge removes it" in output

    installer.run("--prefix", str(prefix), "--uninstall", "--purge")
    assert not (prefix / "var/lib/edged").exists()
    assert installer.shim_calls() == []


def test_a_template_switch_replaces_an_unedited_config(tmp_path: Path) -> None:
    installer, prefix = Installer(tmp_path), tmp_path / "root"
    installer.install(prefix, "--config-template", "laptop")
    installer.install(prefix, "--config-template", "pi-camera")
    assert (prefix / "etc/edged/edged.yaml").read_text() == rendered_template("pi-camera.yaml", prefix)
    assert not (prefix / "etc/edged/edged.yaml.dist").exists()


def test_install_explains_bad_usage(tmp_path: Path) -> None:
    installer = Installer(tmp_path)
    assert "--wheelhouse DIR" in installer.run("--help")
    output = installer.install(tmp_path / "root", "--config-template", "toaster", expect=1)
    assert "no template 'toaster'; there are: drone-mavlink laptop pi-camera" in output
    output = installer.install(tmp_path / "root", expect=1)
    assert "choose a template with --config-template NAME" in output
    assert "unknown option '--frobnicate'" in installer.run("--frobnicate", expect=1)
    assert installer.shim_calls() == []


# Run inside a private mount namespace where /etc and /opt are temporary copies; checks that the copy is in place
# before anything else, so that nothing can reach the real /etc.
REAL_INSTALL_IN_A_NAMESPACE = """
set -euo pipefail
mount --make-rprivate /
mount --bind "$ETC_COPY" /etc
mount --bind "$OPT_COPY" /opt
test -e /etc/.edged-test-copy
export PATH="$SHIMS:$PATH"
bash "$INSTALL_SH" --python-env "$PYTHON_ENV" --config-template pi-camera > "$OUT/install.log" 2>&1
{
    getent group i2c edged video dialout | cut -d: -f1
    getent passwd edged | cut -d: -f1,6,7
    stat -c '%U:%G %a %n' /etc/edged /etc/edged/edged.yaml /etc/edged/edged.env /etc/systemd/system/edged.service
} > "$OUT/facts"
bash "$INSTALL_SH" --uninstall > "$OUT/uninstall.log" 2>&1
{ ls -A /opt; ls /etc/systemd/system/edged.service 2>/dev/null || true; } > "$OUT/after-uninstall"
"""


def runnable_by_another_user(env: Path) -> bool:
    probe = ["runuser", "-u", "nobody", "--", str(env / "bin" / "edged"), "--version"]
    return subprocess.run(probe, capture_output=True, timeout=60).returncode == 0


@pytest.fixture
def service_env() -> Iterator[Path]:
    """An environment the service's user can run: this one, or else (its Python lives under /root, as pyenv's
    does) a venv of the system's Python of the same version that imports this environment's packages."""
    if os.geteuid() != 0:
        pytest.skip("a real install needs root")
    tool("runuser")
    if runnable_by_another_user(THIS_ENV):
        yield THIS_ENV
        return
    system_python = Path("/usr/bin/python3")
    bridge = Path(tempfile.mkdtemp(prefix="edged-service-env-"))  # not under tmp_path: pytest makes that 0700
    try:
        bridge.chmod(0o755)
        if system_python.exists():
            subprocess.run([str(system_python), "-m", "venv", "--without-pip", str(bridge)], check=True, timeout=60)
            python = str(bridge / "bin" / "python")
            query = "import sys, sysconfig; print(sys.version_info[:2] == %r, sysconfig.get_paths()['purelib'])"
            same_version, purelib = subprocess.run(
                [python, "-c", query % (tuple(sys.version_info[:2]),)], capture_output=True, text=True, check=True
            ).stdout.split()
            if same_version == "True":
                ours = sysconfig.get_paths()["purelib"]
                Path(purelib, "edged-test-env.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
                edged = bridge / "bin" / "edged"
                edged.write_text(f"#!{python}\nimport sys\nfrom edged.cli import main\nsys.exit(main())\n")
                edged.chmod(0o755)
        if not runnable_by_another_user(bridge):
            pytest.skip(f"another user cannot run {THIS_ENV}/bin/edged (its Python lives under /root?), nor a venv of "
                        f"{system_python} with its packages: neither could the service's user")  # fmt: skip
        yield bridge
    finally:
        shutil.rmtree(bridge, ignore_errors=True)


def test_a_real_install_creates_user_and_groups_and_enables_the_service(tmp_path: Path, service_env: Path) -> None:
    """Prefix /, as root, in a mount namespace whose /etc and /opt are copies: users, groups, owners, systemctl."""
    for name in ("unshare", "useradd", "groupadd", "getent", "stat"):
        tool(name)
    if any(path.is_relative_to(top) for path in (ROOT, service_env) for top in (Path("/etc"), Path("/opt"))):
        pytest.skip("the checkout or its environment is under /etc or /opt, which the test replaces")
    etc_copy, opt_copy, shims, out = tmp_path / "etc", tmp_path / "opt", tmp_path / "shims", tmp_path / "out"
    subprocess.run(["cp", "-a", "/etc", str(etc_copy)], check=True, timeout=60)
    (etc_copy / ".edged-test-copy").touch()
    for directory in (opt_copy, shims, out):
        directory.mkdir()
    calls = tmp_path / "systemctl-calls"
    (shims / "systemctl").write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\n[ "$1" != is-active ] || exit 3\n')
    (shims / "systemctl").chmod(0o755)
    env = {
        **os.environ,
        "ETC_COPY": str(etc_copy),
        "OPT_COPY": str(opt_copy),
        "SHIMS": str(shims),
        "OUT": str(out),
        "INSTALL_SH": str(INSTALL_SH),
        "PYTHON_ENV": str(service_env),
        "MQTT_PASSWORD": "not-a-secret",
    }
    done = subprocess.run(
        ["unshare", "--mount", "bash", "-c", REAL_INSTALL_IN_A_NAMESPACE], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    logs = "".join(p.read_text() for p in sorted(out.glob("*.log")))
    if done.returncode != 0 and not (out / "install.log").exists():
        pytest.skip(f"cannot make a private mount namespace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr + logs

    facts = (out / "facts").read_text().splitlines()
    assert {"i2c", "edged", "video", "dialout"} <= set(facts), "every SupplementaryGroups= group exists"
    assert "edged:/var/lib/edged:/usr/sbin/nologin" in facts
    assert "root:edged 750 /etc/edged" in facts and "root:edged 640 /etc/edged/edged.yaml" in facts
    assert "root:root 600 /etc/edged/edged.env" in facts
    assert "root:root 644 /etc/systemd/system/edged.service" in facts
    assert "/etc/edged/edged.yaml: valid" in logs, "the config check ran as the service's user"
    systemctl = calls.read_text().splitlines()
    assert systemctl[:2] == ["daemon-reload", "enable edged.service"], systemctl
    assert "disable --now edged.service" in systemctl and systemctl[-1] == "reset-failed edged.service"
    assert (out / "after-uninstall").read_text().split() == [], "the unit and /opt/edged are gone"
    assert etc_copy.joinpath("passwd").read_text() != Path("/etc/passwd").read_text(), "only the copy was changed"


def test_install_script_is_shellcheck_clean() -> None:
    done = subprocess.run([tool("shellcheck"), str(INSTALL_SH)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# --- the unit -----------------------------------------------------------------------------------------------------


def unit_values(text: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            values.setdefault(key, []).append(value)
    return values


def test_the_unit_is_a_watched_notify_service_with_its_own_user_and_only_its_devices() -> None:
    unit = unit_values(UNIT_SOURCE.read_text())
    expected = {
        "Type": ["notify"],
        "NotifyAccess": ["main"],
        "Restart": ["on-failure"],
        "ExecReload": ["/bin/kill -HUP $MAINPID"],
        "User": ["edged"],
        "StateDirectory": ["edged"],
        "ConfigurationDirectory": ["edged"],
        "MemoryDenyWriteExecute": ["yes"],
        "DevicePolicy": ["closed"],
    }
    for key, value in expected.items():
        assert unit.get(key) == value, f"{key}= is {unit.get(key)}, expected {value}"
    assert "WatchdogSec" in unit and "StartLimitBurst" in unit and "StartLimitIntervalSec" in unit
    assert "PrivateDevices" not in unit, "PrivateDevices= would hide the camera and the sensors"
    allowed = " ".join(unit["DeviceAllow"])
    for device in ("char-video4linux", "char-i2c", "char-ttyAMA", "char-ttyUSB", "char-ttyACM"):
        assert device in allowed
    groups = unit["SupplementaryGroups"][0].split()
    assert groups == ["video", "i2c", "dialout"]
    assert f"SUPPLEMENTARY_GROUPS=({' '.join(groups)})" in INSTALL_SH.read_text(), "install.sh creates these"


def test_the_installed_unit_passes_systemd_analyze_verify(installed: Path) -> None:
    unit = installed / "etc/systemd/system/edged.service"
    done = subprocess.run(
        [tool("systemd-analyze"), "verify", str(unit)], capture_output=True, text=True, timeout=60, cwd=installed
    )
    about_us = [line for line in (done.stdout + done.stderr).splitlines() if "edged" in line]
    assert done.returncode == 0 and about_us == [], done.stdout + done.stderr


def test_the_installed_unit_scores_within_the_security_bound(installed: Path) -> None:
    unit = installed / "etc/systemd/system/edged.service"
    done = subprocess.run(
        [tool("systemd-analyze"), "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=installed,
    )
    found = re.search(r"Overall exposure level for edged\.service: (\d+\.\d)", done.stdout)
    assert found, done.stdout + done.stderr
    exposure = float(found.group(1))
    print(f"systemd-analyze security: {exposure} (bound {SECURITY_EXPOSURE_BOUND})")
    assert exposure <= SECURITY_EXPOSURE_BOUND, done.stdout


# --- the example configs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.glob("*.yaml")))
def test_example_configs_pass_config_check(
    template: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("MQTT_PASSWORD", "not-a-secret")
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    assert edged_cli(["config", "check", str(TEMPLATES / template)]) == 0, capsys.readouterr().err

    raw = yaml.safe_load((TEMPLATES / template).read_text())
    assert raw["mqtt"]["password"] == "${MQTT_PASSWORD}", "secrets stay out of the file"
    assert raw["mqtt"]["username"] == raw["mqtt"]["device_id"], "the broker's ACL keys devices by username"
    assert raw["zoo"]["path"] == "/opt/edged/model_zoo"
    config = load_config(TEMPLATES / template)
    assert config.mqtt.outbox_path == tmp_path / "outbox.sqlite3", "a relative outbox lands in $STATE_DIRECTORY"


def test_example_configs_use_the_power_sources_of_their_device() -> None:
    def source_types(template: str) -> list[tuple[str, str | None]]:
        config = yaml.safe_load((TEMPLATES / template).read_text())
        return [(s["type"], s.get("chip") or s.get("name") or s.get("connection")) for s in config["power"]["sources"]]

    assert source_types("pi-camera.yaml")[0] == ("hwmon", "ina219")
    assert source_types("laptop.yaml") == [("rapl", None), ("power_supply", "BAT0")]
    assert source_types("drone-mavlink.yaml") == [("mavlink", "/dev/ttyAMA0")]
    drone = yaml.safe_load((TEMPLATES / "drone-mavlink.yaml").read_text())["governor"]
    assert drone["mission_minutes"] > 0 and drone["accuracy_floor"] > 0


# --- sd_notify on a real socket -----------------------------------------------------------------------------------

# Runs the daemon with writable+executable memory refused by the kernel (PR_SET_MDWE, Linux >= 6.3), as the
# unit's MemoryDenyWriteExecute=yes does: the engines must load and run under it. Older kernels: runs without.
RUN_WITH_W_XOR_X = """
import ctypes, os, sys
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
enforced = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) == 0
print("W^X memory:", "enforced" if enforced else "not supported by this kernel", file=sys.stderr, flush=True)
os.execv(sys.argv[1], sys.argv[1:])
"""


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    made = NotifySocket()
    yield made
    made.close()


def test_the_daemon_notifies_ready_watchdog_reloading_and_stopping(
    coco_zoo, notify_socket: NotifySocket, tmp_path: Path
) -> None:
    state_directory = tmp_path / "state"
    state_directory.mkdir()
    config = tmp_path / "edged.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "source": {"type": "file", "path": str(DEMO_CLIP), "loop": True, "realtime": True},
                "zoo": {"path": str(REFERENCE_ZOOS / "coco-reference"), "variant": "fastestdet-352"},
                "engine": {"threads": 1},
                "mqtt": {"enabled": False},  # outbox_path stays relative: $STATE_DIRECTORY
            }
        )
    )
    env = {
        **os.environ,
        "NOTIFY_SOCKET": notify_socket.path,
        "WATCHDOG_USEC": "2000000",
        "STATE_DIRECTORY": str(state_directory),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("WATCHDOG_PID", None)
    log = tmp_path / "daemon.log"
    command = [sys.executable, "-c", RUN_WITH_W_XOR_X, sys.executable, "-m", "edged", "run", "-c", str(config)]
    with open(log, "wb") as output:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        ready = notify_socket.wait_for(lambda m: m.get("READY") == "1", 90, "READY=1", log)
        assert notify_socket.messages[ready].get("STATUS", "").startswith("running fastestdet-352")
        assert notify_socket.messages[ready].get("MAINPID") == str(process.pid)
        first_ping = notify_socket.wait_for(lambda m: m.get("WATCHDOG") == "1", 10, "WATCHDOG=1", log)
        notify_socket.wait_for(lambda m: m.get("WATCHDOG") == "1", 10, "a second WATCHDOG=1", log, after=first_ping)
        assert (state_directory / "frame_counter").exists(), "the daemon's state goes to $STATE_DIRECTORY"

        process.send_signal(signal.SIGHUP)
        reloading = notify_socket.wait_for(lambda m: m.get("RELOADING") == "1", 15, "RELOADING=1", log)
        assert "MONOTONIC_USEC" in notify_socket.messages[reloading]
        notify_socket.wait_for(lambda m: m.get("READY") == "1", 15, "READY=1 after the reload", log, after=reloading)

        process.send_signal(signal.SIGTERM)
        notify_socket.wait_for(lambda m: m.get("STOPPING") == "1", 15, "STOPPING=1", log)
        assert process.wait(30) == 0, log.read_text(errors="replace")[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    kernel = tuple(int(part) for part in re.findall(r"\d+", os.uname().release)[:2])
    if kernel >= (6, 3):  # PR_SET_MDWE exists: the engines ran with W^X enforced
        assert b"W^X memory: enforced" in log.read_bytes()


def test_the_tflite_engine_runs_with_write_xor_execute_memory(coco_zoo, tmp_path: Path) -> None:
    """The daemon test above covers onnxruntime under W^X; this covers TFLite (XNNPACK), the other engine."""
    kernel = tuple(int(part) for part in re.findall(r"\d+", os.uname().release)[:2])
    if kernel < (6, 3):
        pytest.skip(f"kernel {os.uname().release} has no PR_SET_MDWE to enforce W^X with")
    if not any(importlib.util.find_spec(name) for name in ("ai_edge_litert", "tflite_runtime")):
        pytest.skip("no TFLite runtime installed (the [tflite] extra)")
    zoo = REFERENCE_ZOOS / "coco-reference"
    command = [sys.executable, "-c", RUN_WITH_W_XOR_X, sys.executable, "-m", "edged", "detect", str(DEMO_CLIP),
               "--zoo", str(zoo), "--variant", "fastestdet-352-tflite-int8", "--max-frames", "2", "--json"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0 and "W^X memory: enforced" in done.stderr, done.stderr[-3000:]
    assert len(done.stdout.splitlines()) == 2


# --- mosquitto: TLS, passwords, the ACL ---------------------------------------------------------------------------

DEVICE, OTHER_DEVICE, OPERATOR, HOME_ASSISTANT = "pole-cam1", "drone1", "operator", "homeassistant"
PASSWORDS = {DEVICE: "device-pass", OTHER_DEVICE: "other-pass", OPERATOR: "operator-pass", HOME_ASSISTANT: "ha-pass"}
NOT_AUTHORIZED = 135  # MQTT 5 reason code


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run([tool("openssl"), *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(directory: Path) -> None:
    """A throwaway CA and a server certificate for localhost, where edged.conf expects them."""
    directory.mkdir(parents=True)
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=directory)
    openssl("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=edged deploy test CA", "-days", "1",
            "-out", "ca.crt", cwd=directory)  # fmt: skip
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "server.key", cwd=directory)
    openssl("req", "-new", "-key", "server.key", "-subj", "/CN=localhost", "-out", "server.csr", cwd=directory)
    (directory / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days",
            "1", "-extfile", "server.ext", "-out", "server.crt", cwd=directory)  # fmt: skip


def write_password_file(path: Path, passwords: dict[str, str]) -> None:
    """With mosquitto_passwd when it is installed, else in its format: $7$ = PBKDF2-SHA512, 101 rounds."""
    passwd = shutil.which("mosquitto_passwd")
    if passwd:
        path.touch()
        for user, password in passwords.items():
            subprocess.run([passwd, "-b", str(path), user, password], check=True, capture_output=True, timeout=30)
    else:
        lines = []
        for user, password in passwords.items():
            salt = os.urandom(12)
            digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
            lines.append(f"{user}:$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}")
        path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


@pytest.fixture(scope="module")
def secured_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mosquitto, Path]]:
    """mosquitto with deploy/mosquitto/edged.conf and acl, its paths moved to a temporary /etc/mosquitto/edged."""
    workdir = tmp_path_factory.mktemp("mosquitto")
    etc = workdir / "etc-mosquitto-edged"
    make_certificates(etc / "certs")
    write_password_file(etc / "passwd", PASSWORDS)
    shutil.copy(MOSQUITTO_DIR / "acl", etc / "acl")

    ca = etc / "certs" / "ca.crt"
    broker = Mosquitto(workdir / "broker", port=free_port(), tls_context=ssl.create_default_context(cafile=ca))
    shipped = (MOSQUITTO_DIR / "edged.conf").read_text()
    assert "\nlistener 8883\n" in shipped
    config = shipped.replace("/etc/mosquitto/edged/", f"{etc}/").replace(
        "\nlistener 8883\n", f"\nlistener {broker.port} {broker.host}\n"
    )
    # as root, mosquitto would switch to the `mosquitto` user, which cannot read the temporary directory
    broker.config_path.write_text(f"user {getpass.getuser()}\nlog_dest stderr\n{config}")
    with broker:
        yield broker, ca


def as_user(user: str, ca: Path) -> Callable[[mqtt.Client], None]:
    def setup(client: mqtt.Client) -> None:
        client.tls_set(ca_certs=str(ca))
        client.username_pw_set(user, PASSWORDS[user])

    return setup


class Client:
    """A paho MQTT 5 client that reports CONNACK and PUBACK reason codes."""

    def __init__(self, broker: Mosquitto, ca: Path, user: str | None, password: str | None = None) -> None:
        self.connack: int | None = None
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.tls_set(ca_certs=str(ca))
        if user is not None:
            self.client.username_pw_set(user, password if password is not None else PASSWORDS[user])
        self.client.on_connect = self._on_connect
        self.acks: dict[int, int] = {}
        self.client.on_publish = self._on_publish
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        wait_until(lambda: self.connack is not None, 10, f"the broker's answer to {user}")

    def _on_connect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _properties: Any) -> None:
        self.connack = int(reason.value)

    def _on_publish(self, _client: Any, _userdata: Any, mid: int, reason: Any, _properties: Any) -> None:
        self.acks[mid] = int(reason.value)

    def publish(self, topic: str, payload: str) -> int:
        """Publish at QoS 1 and return the PUBACK's reason code (0: accepted, 135: not authorised)."""
        mid = self.client.publish(topic, payload, qos=1).mid
        wait_until(lambda: mid in self.acks, 10, f"PUBACK for {topic}")
        return self.acks[mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_the_broker_refuses_anonymous_clients_and_wrong_passwords(secured_broker: tuple[Mosquitto, Path]) -> None:
    broker, ca = secured_broker
    for user, password in ((None, None), (DEVICE, "wrong")):
        client = Client(broker, ca, user, password)
        assert client.connack in (NOT_AUTHORIZED, 134), f"{user} connected with {client.connack}"  # 134: bad login
        client.close()


def test_only_operators_may_command_devices(secured_broker: tuple[Mosquitto, Path]) -> None:
    broker, ca = secured_broker
    command = f"edged/{DEVICE}/set/accuracy_floor"
    watcher = Recorder(broker, "edged/+/set/#", client_id="acl-watcher", setup=as_user(OPERATOR, ca))
    clients = {user: Client(broker, ca, user) for user in (DEVICE, OTHER_DEVICE, HOME_ASSISTANT, OPERATOR)}
    try:
        assert all(client.connack == 0 for client in clients.values())
        assert clients[OTHER_DEVICE].publish(command, "0.9") == NOT_AUTHORIZED, "a device commanding another"
        assert clients[DEVICE].publish(command, "0.8") == NOT_AUTHORIZED, "a device commanding itself"
        assert clients[HOME_ASSISTANT].publish(command, "0.7") == NOT_AUTHORIZED, "Home Assistant only reads"
        assert clients[DEVICE].publish(f"edged/{OTHER_DEVICE}/detections", "{}") == NOT_AUTHORIZED, "another's tree"
        assert clients[OPERATOR].publish(command, "0.3") == 0
        received = watcher.wait_for(command)
        assert [m.payload for m in received] == [b"0.3"], "only the operator's command got through"
    finally:
        watcher.close()
        for client in clients.values():
            client.close()


def test_the_acl_lets_a_device_run_the_whole_mqtt_contract(
    secured_broker: tuple[Mosquitto, Path], tmp_path: Path
) -> None:
    """The real MqttLink as a device: everything it publishes reaches Home Assistant, and commands work."""
    broker, ca = secured_broker
    home_assistant = Recorder(
        broker, "edged/#", "homeassistant/#", client_id="ha-reader", setup=as_user(HOME_ASSISTANT, ca)
    )
    operator = Client(broker, ca, OPERATOR)
    links = Links()
    try:
        config = link_config(broker, tmp_path, tls=TlsConfig(ca_certs=ca), device_id=DEVICE, username=DEVICE,
                             password=PASSWORDS[DEVICE], discovery_prefix="homeassistant")  # fmt: skip
        link = links.start(config)
        link.publish_detections(detection(0, device=DEVICE))
        link.publish_state(state(device=DEVICE))
        base = f"edged/{DEVICE}"
        for topic in (f"{base}/availability", f"{base}/detections", f"{base}/state",
                      f"homeassistant/device/edged_{DEVICE}/config"):  # fmt: skip
            home_assistant.wait_for(topic)
        assert home_assistant.on(f"{base}/availability")[-1].payload == b"online"

        assert operator.publish(f"{base}/set/accuracy_floor", "0.3") == 0
        result = home_assistant.wait_for(f"{base}/set/accuracy_floor/result")[-1].json()
        assert result["ok"] is True and result["value"] == 0.3
        assert [command.name for command in links.applied] == ["accuracy_floor"]
    finally:
        for link in links.created:
            link.stop(timeout_s=1.0)
        operator.close()
        home_assistant.close()
