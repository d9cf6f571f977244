"""TLS, username/password and client certificates against a mosquitto that requires them.

A throwaway CA, server and client certificate are made with the openssl CLI at test time.
"""

from __future__ import annotations

import logging
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edged.config import TlsConfig
from edged.mqtt.link import MqttError, MqttLink
from tests.mqtt.conftest import (
    BASE_TOPIC,
    Links,
    Recorder,
    detection,
    frames_of,
    link_config,
    wait_until,
)
from tests.mqtt_broker import Mosquitto

USER, PASSWORD = "edged", "s3cret-pass"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def issue(name: str, subject: str, extensions: str, cwd: Path) -> None:
    """An EC key and a certificate signed by the test CA."""
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key", cwd=cwd)
    openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=cwd)
    (cwd / f"{name}.ext").write_text(extensions + "\n")
    openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "1", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=cwd,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is not installed")
    cwd = tmp_path_factory.mktemp("pki")
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=cwd)
    openssl("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=edged test CA", "-days", "1", "-out", "ca.crt",
            cwd=cwd)  # fmt: skip
    issue("server", "/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1", cwd)
    issue("client", "/CN=cam1", "extendedKeyUsage=clientAuth", cwd)
    return cwd


def password_file(directory: Path) -> Path:
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd is not installed (it comes with mosquitto)")
    path = directory / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(path), USER, PASSWORD], check=True, timeout=30)
    path.chmod(0o600)
    return path


def tls_listener(pki: Path, require_certificate: bool) -> list[str]:
    return [
        f"cafile {pki / 'ca.crt'}",
        f"certfile {pki / 'server.crt'}",
        f"keyfile {pki / 'server.key'}",
        f"require_certificate {'true' if require_certificate else 'false'}",
    ]


@pytest.fixture
def secure_broker(tmp_path: Path, pki: Path) -> Iterator[Mosquitto]:
    """TLS; anonymous refused; one user in a password file."""
    passwd = password_file(tmp_path)
    options = [*tls_listener(pki, require_certificate=False), "allow_anonymous false", f"password_file {passwd}"]
    with Mosquitto(tmp_path / "broker", listener_options=options) as running:
        yield running


def trusted(pki: Path, client_cert: bool = False, login: bool = True):
    def setup(client: mqtt.Client) -> None:
        certfile, keyfile = (str(pki / "client.crt"), str(pki / "client.key")) if client_cert else (None, None)
        client.tls_set(ca_certs=str(pki / "ca.crt"), certfile=certfile, keyfile=keyfile)
        if login:
            client.username_pw_set(USER, PASSWORD)

    return setup


def test_tls_with_a_password_refuses_anonymous_and_wrong_credentials_and_accepts_the_right_ones(
    secure_broker: Mosquitto,
    tmp_path: Path,
    pki: Path,
    links: Links,
    recorders: list[Recorder],
    caplog: pytest.LogCaptureFixture,
) -> None:
    tls = TlsConfig(ca_certs=pki / "ca.crt")
    caplog.set_level(logging.WARNING, logger="edged.mqtt")
    anonymous = links.start(
        link_config(secure_broker, tmp_path / "anon", tls=tls, client_id="anon"), wait_connected=False
    )
    wrong = links.start(
        link_config(secure_broker, tmp_path / "wrong", tls=tls, username=USER, password="nope", client_id="wrong"),
        wait_connected=False,
    )
    wait_until(lambda: caplog.text.count("the broker refused the connection") >= 2, what="both refusals")
    assert not anonymous.connected and not wrong.connected
    assert "Not authorized" in caplog.text or "Bad user name or password" in caplog.text

    recorders.append(recorder := Recorder(secure_broker, f"{BASE_TOPIC}/detections", setup=trusted(pki)))
    link = links.start(link_config(secure_broker, tmp_path / "ok", tls=tls, username=USER, password=PASSWORD))
    for frame in range(5):
        link.publish_detections(detection(frame))
    assert frames_of(recorder.wait_for(f"{BASE_TOPIC}/detections", 5)) == list(range(5))


def test_a_server_certificate_from_another_ca_is_not_trusted(
    secure_broker: Mosquitto, tmp_path: Path, links: Links, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edged.mqtt")
    link = links.start(
        link_config(secure_broker, tmp_path, tls=TlsConfig(), username=USER, password=PASSWORD),  # system CAs only
        wait_connected=False,
    )
    wait_until(lambda: "cannot reach the broker" in caplog.text, what="the failed handshake to be reported")
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
    assert not link.connected


def test_a_client_certificate_is_required_and_accepted(
    tmp_path: Path, pki: Path, links: Links, recorders: list[Recorder]
) -> None:
    options = [*tls_listener(pki, require_certificate=True), "allow_anonymous true"]
    with Mosquitto(tmp_path / "broker", listener_options=options) as broker:
        without = links.start(link_config(broker, tmp_path / "without", tls=TlsConfig(ca_certs=pki / "ca.crt"),
                                          client_id="without"), wait_connected=False)  # fmt: skip
        recorders.append(
            recorder := Recorder(broker, f"{BASE_TOPIC}/detections", setup=trusted(pki, client_cert=True, login=False))
        )
        tls = TlsConfig(ca_certs=pki / "ca.crt", certfile=pki / "client.crt", keyfile=pki / "client.key")
        link = links.start(link_config(broker, tmp_path / "with", tls=tls))
        link.publish_detections(detection(0))
        assert frames_of(recorder.wait_for(f"{BASE_TOPIC}/detections")) == [0]
        assert not without.connected


def test_unreadable_tls_files_are_a_clear_error(tmp_path: Path, broker: Mosquitto) -> None:
    tls = TlsConfig(ca_certs=tmp_path / "missing-ca.crt")
    with pytest.raises(MqttError, match=r"mqtt\.tls: cannot load the certificates"):
        MqttLink(link_config(broker, tmp_path, tls=tls), on_command=lambda _c: None)


def test_the_test_pki_is_valid(pki: Path) -> None:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "client.crt"), str(pki / "client.key"))
