"""Revocast's Kafka settings as faust settings, for the worker's own consumer and producer.

``REVOCAST_KAFKA_OPTIONS`` holds kafka-python option names, shared by every Revocast client.
faust's clients (aiokafka) take some of them under other names and units; those are mapped
here. The rest are not applied to faust's clients and are reported, so that a setting a
cluster needs is never dropped without a word. Options the worker's guarantees fix are never
taken from there: ``acks`` (markers wait for ``acks=all``), ``auto_offset_reset``
(``earliest``), ``enable_auto_commit``, the group timeouts (the worker's own settings).
Nor is ``api_version``: aiokafka negotiates it (0.13 on ignore the setting), refuses any
version from 3.0 on, and one below 0.11 would make faust drop record headers, the events'
signatures. A ``compression_type`` aiokafka has no codec for (lz4, snappy and zstd need
``cramjam``, kafka-python other libraries) is reported instead of stopping the producer.

The worker's kafka-python clients (topic checks, offset markers, state reads, snapshots)
take ``KafkaSettings.client_config`` like the SDK's.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from typing import Any

import aiokafka.codec  # type: ignore[import-untyped]
import faust

from revocation_events import KafkaSettings, SettingsError

__all__ = ["faust_credentials", "faust_options"]


def _seconds(ms: Any) -> float:
    return float(ms) / 1000.0


_CODECS = ("gzip", "snappy", "lz4", "zstd")


def _compression(value: Any) -> tuple[str | None, str | None]:
    """The producer's compression type for ``compression_type``, and why it is left out."""
    if value is None:
        return None, None  # kafka-python's default: none
    if value not in _CODECS:
        raise SettingsError(
            f"REVOCAST_KAFKA_OPTIONS: compression_type={value!r} is none of {', '.join(_CODECS)}"
        )
    if not getattr(aiokafka.codec, f"has_{value}")():
        return None, f"compression_type={value} (aiokafka needs cramjam for it)"
    return str(value), None


_MAPPED: Mapping[str, tuple[tuple[str, Callable[[Any], Any]], ...]] = {
    "check_crcs": (("broker_check_crcs", bool),),
    "connections_max_idle_ms": (
        ("consumer_connections_max_idle_ms", int),
        ("producer_connections_max_idle_ms", int),
    ),
    "group_instance_id": (("consumer_group_instance_id", str),),
    "linger_ms": (("producer_linger_ms", int),),
    "batch_size": (("producer_max_batch_size", int),),
    "max_partition_fetch_bytes": (("consumer_max_fetch_size", int),),
    "max_poll_interval_ms": (("broker_max_poll_interval", _seconds),),
    "max_poll_records": (("broker_max_poll_records", int),),
    "max_request_size": (("producer_max_request_size", int),),
    "metadata_max_age_ms": (
        ("consumer_metadata_max_age_ms", int),
        ("producer_metadata_max_age_ms", int),
    ),
    "request_timeout_ms": (
        ("broker_request_timeout", _seconds),
        ("producer_request_timeout", _seconds),
    ),
}
"""kafka-python option -> the faust settings it becomes, with the conversion."""

_SSL = frozenset({"ssl_check_hostname", "ssl_ciphers", "ssl_crlfile"})
"""Options applied to the SSL context faust's clients use."""


def faust_options(kafka: KafkaSettings) -> tuple[dict[str, Any], list[str]]:
    """The faust settings ``kafka.extra`` maps to, and the option names it leaves out."""
    settings: dict[str, Any] = {}
    left_out: list[str] = []
    for name, value in sorted(kafka.extra.items()):
        if name == "compression_type":
            codec, why_not = _compression(value)
            if codec is not None:
                settings["producer_compression_type"] = codec
            if why_not is not None:
                left_out.append(why_not)
            continue
        targets = _MAPPED.get(name)
        if targets is None:
            if name not in _SSL:
                left_out.append(name)
            continue
        for target, convert in targets:
            try:
                settings[target] = convert(value)
            except (TypeError, ValueError):
                raise SettingsError(
                    f"REVOCAST_KAFKA_OPTIONS: {name}={value!r} cannot be used by the streams worker"
                ) from None
    return settings, left_out


def faust_credentials(kafka: KafkaSettings) -> Any:
    """faust's credentials for the cluster's security protocol (``None`` for PLAINTEXT)."""
    protocol = kafka.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context: ssl.SSLContext | None = None
    if protocol.endswith("SSL"):
        context = _ssl_context(kafka)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    if kafka.sasl_mechanism not in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        raise SettingsError(f"the streams worker does not support SASL {kafka.sasl_mechanism}")
    return faust.SASLCredentials(
        username=kafka.sasl_username,
        password=kafka.sasl_password,
        ssl_context=context,
        mechanism=kafka.sasl_mechanism,
    )


def _ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=kafka.ssl_cafile)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"ssl_cafile {kafka.ssl_cafile!r}: {exc}") from None
    if kafka.ssl_certfile:
        try:
            context.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile, kafka.ssl_password)
        except (OSError, ssl.SSLError) as exc:
            raise SettingsError(
                f"ssl_certfile {kafka.ssl_certfile!r} / ssl_keyfile {kafka.ssl_keyfile!r}: "
                f"{type(exc).__name__}"
            ) from None
    extra = kafka.extra
    if extra.get("ssl_check_hostname") is False:
        context.check_hostname = False
    ciphers = extra.get("ssl_ciphers")
    if ciphers:
        try:
            context.set_ciphers(str(ciphers))
        except ssl.SSLError:
            raise SettingsError(
                f"REVOCAST_KAFKA_OPTIONS: ssl_ciphers={ciphers!r} selects no cipher"
            ) from None
    crlfile = extra.get("ssl_crlfile")
    if crlfile:
        try:
            context.load_verify_locations(cafile=str(crlfile))
        except (OSError, ssl.SSLError) as exc:
            raise SettingsError(f"REVOCAST_KAFKA_OPTIONS: ssl_crlfile {crlfile!r}: {exc}") from None
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return context
