"""REVOCAST_KAFKA_OPTIONS reach the worker's faust clients, or are named when they cannot."""

from __future__ import annotations

import datetime
import logging
import ssl
from pathlib import Path
from typing import Any

import faust
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from revocation_events import KafkaSettings, SettingsError
from streams import StreamsSettings
from streams._faust_config import faust_credentials, faust_options
from streams.app import create_app


def _kafka(**extra: Any) -> KafkaSettings:
    return KafkaSettings(extra=extra)


def test_options_faust_knows_are_mapped_to_its_names_and_units() -> None:
    options, left_out = faust_options(
        _kafka(
            request_timeout_ms=120_000,
            api_version=[2, 8],
            linger_ms=5,
            max_poll_interval_ms=600_000,
            metadata_max_age_ms=60_000,
        )
    )
    assert options == {
        "broker_request_timeout": 120.0,
        "producer_request_timeout": 120.0,
        "consumer_api_version": "2.8",
        "producer_api_version": "2.8",
        "producer_linger_ms": 5,
        "broker_max_poll_interval": 600.0,
        "consumer_metadata_max_age_ms": 60_000,
        "producer_metadata_max_age_ms": 60_000,
    }
    assert left_out == []


def test_options_the_worker_fixes_or_faust_lacks_are_named_not_applied() -> None:
    options, left_out = faust_options(
        _kafka(acks=1, fetch_max_wait_ms=10, ssl_check_hostname=False)
    )
    assert options == {}
    assert left_out == ["acks", "fetch_max_wait_ms"]  # the SSL option goes to the context


def test_the_app_gets_them_and_the_log_names_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    settings = StreamsSettings(
        allow_unsigned=True,
        kafka=_kafka(max_request_size=2_000_000, compression_type="lz4", acks=1),
    )
    with caplog.at_level(logging.WARNING, "streams"):
        app = create_app(settings, partitions=1)  # builds the clients' settings; connects later
    assert app.conf.producer_max_request_size == 2_000_000
    assert app.conf.producer_compression_type == "lz4"
    assert app.conf.producer_acks == -1, "markers need acks=all whatever the options say"
    assert "not applied to the worker's faust clients: acks" in caplog.text


def test_a_value_faust_cannot_take_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="max_poll_records='many'"):
        faust_options(_kafka(max_poll_records="many"))


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and its key, in PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "revocast-test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    where = tmp_path_factory.mktemp("tls")
    crt, key_file = where / "cert.pem", where / "key.pem"
    crt.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return crt, key_file


def _context(kafka: KafkaSettings) -> ssl.SSLContext:
    credentials = faust_credentials(kafka)
    assert isinstance(credentials, faust.SSLCredentials)
    context = credentials.context
    assert isinstance(context, ssl.SSLContext)
    return context


def test_ssl_options_shape_the_context_of_the_faust_clients(cert: tuple[Path, Path]) -> None:
    crt, key = cert
    plain = _context(KafkaSettings(security_protocol="SSL", ssl_cafile=str(crt)))
    assert plain.check_hostname
    assert not plain.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF
    shaped = _context(
        KafkaSettings(
            security_protocol="SSL",
            ssl_cafile=str(crt),
            ssl_certfile=str(crt),
            ssl_keyfile=str(key),
            extra={"ssl_check_hostname": False, "ssl_crlfile": str(crt)},
        )
    )
    assert not shaped.check_hostname
    assert shaped.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ssl_cafile": "/nonexistent/ca.pem"}, "ssl_cafile '/nonexistent/ca.pem'"),
        ({"extra": {"ssl_ciphers": "NO-SUCH-CIPHER"}}, "selects no cipher"),
        ({"extra": {"ssl_crlfile": "/nonexistent/crl.pem"}}, "ssl_crlfile"),
    ],
)
def test_bad_ssl_settings_are_one_settings_error(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        faust_credentials(KafkaSettings(security_protocol="SSL", **fields))


def test_a_wrong_key_password_is_named_without_the_password(cert: tuple[Path, Path]) -> None:
    crt, _ = cert
    with pytest.raises(SettingsError) as caught:
        faust_credentials(
            KafkaSettings(
                security_protocol="SSL",
                ssl_certfile=str(crt),
                ssl_keyfile="/nonexistent/key.pem",
                ssl_password="hunter2",
            )
        )
    assert "ssl_keyfile '/nonexistent/key.pem'" in str(caught.value)
    assert "hunter2" not in str(caught.value)
