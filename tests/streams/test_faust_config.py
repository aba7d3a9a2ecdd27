"""REVOCAST_KAFKA_OPTIONS reach the worker's faust clients, or are named when they cannot."""

from __future__ import annotations

import datetime
import logging
import ssl
from pathlib import Path
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
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
            linger_ms=5,
            max_poll_interval_ms=600_000,
            metadata_max_age_ms=60_000,
        )
    )
    assert options == {
        "broker_request_timeout": 120.0,
        "producer_request_timeout": 120.0,
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
        kafka=_kafka(max_request_size=2_000_000, compression_type="gzip", acks=1),
    )
    with caplog.at_level(logging.WARNING, "streams"):
        app = create_app(settings, partitions=1)  # builds the clients' settings; connects later
    assert app.conf.producer_max_request_size == 2_000_000
    assert app.conf.producer_compression_type == "gzip"
    assert app.conf.producer_acks == -1, "markers need acks=all whatever the options say"
    assert "not applied to the worker's faust clients: acks" in caplog.text


def _app(caplog: pytest.LogCaptureFixture, **extra: Any) -> Any:
    with caplog.at_level(logging.WARNING, "streams"):
        return create_app(StreamsSettings(allow_unsigned=True, kafka=_kafka(**extra)), partitions=1)


def test_a_kafka_3_api_version_does_not_stop_the_worker(caplog: pytest.LogCaptureFixture) -> None:
    """aiokafka refuses any pinned version from 3.0 on (and ignores the setting otherwise:
    it negotiates), so a cluster pinned at 3.x stopped the worker's producer."""
    for version in ([3, 6, 0], "3.7", [2, 8]):
        assert _app(caplog, api_version=version).producer is not None
    assert "not applied to the worker's faust clients: api_version" in caplog.text


def _compressible(conf: Any) -> bool:
    """Whether aiokafka's producer takes the app's compression type (it raises otherwise)."""
    name = conf.producer_compression_type
    return name is None or (
        name in AIOKafkaProducer._COMPRESSORS and AIOKafkaProducer._COMPRESSORS[name][0]()
    )


@pytest.mark.parametrize("codec", [None, "gzip", "lz4", "snappy", "zstd"])
def test_a_compression_type_the_producer_cannot_use_does_not_stop_the_worker(
    caplog: pytest.LogCaptureFixture, codec: str | None
) -> None:
    """kafka-python compresses with lz4/zstandard/python-snappy, aiokafka with cramjam: a
    cluster-wide compression_type stopped the worker's producer where cramjam is missing,
    and kafka-python's default (null) was taken as the name 'None'."""
    app = _app(caplog, compression_type=codec)
    assert _compressible(app.conf)
    if codec is not None and app.conf.producer_compression_type is None:
        assert "compression_type" in caplog.text


def test_a_request_timeout_below_the_session_timeout_does_not_stop_the_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """faust refuses a consumer whose request timeout is below its session timeout."""
    app = _app(caplog, request_timeout_ms=5_000)
    assert app.conf.broker_request_timeout >= app.conf.broker_session_timeout
    assert app.conf.producer_request_timeout == 5.0
    assert "request_timeout_ms" in caplog.text


def test_a_value_faust_cannot_take_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="max_poll_records must be int"):  # KafkaSettings'
        faust_options(_kafka(max_poll_records="many"))
    with pytest.raises(SettingsError, match="compression_type='brotli'"):
        faust_options(_kafka(compression_type="brotli"))


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
