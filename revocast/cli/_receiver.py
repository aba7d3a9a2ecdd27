"""``revocast receiver``: the standards bridge (SSF push/poll, back-channel logout) on uvicorn.

Settings come from the environment: ``REVOCAST_RECEIVER_*`` for the receiver (see
receiver/README.md) and ``REVOCAST_*`` for the publisher it sends through::

    REVOCAST_RECEIVER_EVENT_ISSUER=ssf-bridge REVOCAST_SIGNING_KEY=... \\
    REVOCAST_RECEIVER_ISSUER=https://tx.example.com REVOCAST_RECEIVER_AUDIENCE=https://me \\
    REVOCAST_RECEIVER_PUSH_TOKENS=... revocast receiver --port 8080
"""

from __future__ import annotations

import argparse
import logging
import os
from datetime import timedelta

from revocast.cli._common import CommandError, port

__all__ = ["register"]

log = logging.getLogger("revocast.cli.receiver")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``receiver``."""
    parser = subparsers.add_parser(
        "receiver",
        help="accept SSF/CAEP/RISC events and OIDC back-channel logouts, publish revocations",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: %(default)s)")
    parser.add_argument("--port", type=port, default=8080, help="bind port (default: %(default)s)")
    parser.add_argument(
        "--verify-stream",
        action="store_true",
        help="ask the transmitter for a verification event at startup",
    )
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="validate the settings and exit without serving",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        import httpx
        import uvicorn

        from producer import Publisher, PublisherSettings
        from receiver import Poller, Receiver, ReceiverError, ReceiverSettings, create_app
        from revocation_events import SettingsError
    except ImportError as exc:  # the web extra is optional
        raise CommandError(f"the receiver needs the 'web' extra: {exc.name} is missing") from exc

    try:
        settings = ReceiverSettings.from_env()
        # The events published carry the receiver's issuer; the publisher's own one (which
        # its settings require) only names events it builds itself, which it does not here.
        environ = {"REVOCAST_EVENT_ISSUER": settings.event_issuer, **os.environ}
        publisher_settings = PublisherSettings.from_env(environ=environ)
    except SettingsError as exc:
        raise CommandError(str(exc)) from exc
    if settings.transmitter is None and settings.logout is None:
        raise CommandError(
            "nothing to receive: set REVOCAST_RECEIVER_ISSUER (SSF) "
            "and/or REVOCAST_RECEIVER_LOGOUT_ISSUER (back-channel logout)"
        )
    t = settings.transmitter
    if t is not None and not t.push_tokens and settings.poll is None:
        raise CommandError(
            "SETs from REVOCAST_RECEIVER_ISSUER could arrive neither by push "
            "(set REVOCAST_RECEIVER_PUSH_TOKENS) nor by poll (set REVOCAST_RECEIVER_POLL_URL)"
        )
    if args.check_config:
        print("receiver settings OK")
        return 0

    lifetime = timedelta(seconds=publisher_settings.max_token_lifetime)
    # Long polls are held open by the transmitter: allow reads well past the usual timeout.
    timeout = httpx.Timeout(settings.http_timeout, read=max(settings.http_timeout, 120.0))
    with (
        Publisher(publisher_settings) as publisher,
        Receiver(settings=settings, sink=publisher, max_token_lifetime=lifetime) as receiver,
        httpx.Client(timeout=timeout) as poll_client,
    ):
        poller: Poller | None = None
        if settings.poll is not None:
            assert settings.transmitter is not None
            poller = Poller(
                receiver=receiver,
                settings=settings.poll,
                client=poll_client,
                token=settings.transmitter.receiver_token,
            )
            poller.start()
        if args.verify_stream:
            try:
                receiver.request_verification()
            except ReceiverError as exc:
                log.warning("stream verification request failed: %s", exc)
        try:
            uvicorn.run(create_app(receiver, start=False), host=args.host, port=args.port)
        finally:
            if poller is not None:
                poller.close()
    return 0
