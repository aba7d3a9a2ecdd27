"""``revocast revoke …``, ``block``, ``unblock``, ``delete-subject``, ``bump-version`` and
``keys generate``: publish revocations by hand (incident response, support tools).

Settings come from the environment (see :meth:`producer.PublisherSettings.from_env`). Exit
codes: 0 acknowledged by Kafka, 3 queued in the outbox (not yet in effect), 1 Kafka failure,
2 bad arguments or settings.
"""

from __future__ import annotations

import argparse
import base64
import secrets
from collections.abc import Callable
from datetime import UTC, datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from producer import (
    InvalidRevocationError,
    Publisher,
    PublishError,
    PublisherSettings,
    PublishResult,
)
from revocast.cli._common import CommandError
from revocation_events import KeySpecError, SettingsError, SigningKey, public_key_spec

__all__ = ["EXIT_QUEUED", "parse_time", "register"]

EXIT_QUEUED = 3

_Action = Callable[[Publisher, argparse.Namespace], PublishResult]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the publishing commands and ``keys generate``."""
    revoke = subparsers.add_parser("revoke", help="revoke a token, session, subject, key or all")
    kinds = revoke.add_subparsers(dest="revoke_kind", metavar="KIND", required=True)

    token = _action(kinds, "token", "revoke one token by jti", _revoke_token)
    token.add_argument("jti")
    token.add_argument("--exp", required=True, metavar="TIME", help="the token's exp")
    token.add_argument("--sub", default=None, help="the token's subject (keeps order)")

    session = _action(kinds, "session", "revoke every token of a session", _revoke_session)
    session.add_argument("sid")
    session.add_argument("--sub", default=None, help="the session's subject (keeps order)")

    subject = _action(kinds, "subject", "log a subject out everywhere", _revoke_subject)
    subject.add_argument("sub")
    subject.add_argument("--issued-before", default=None, metavar="TIME", help="default: now")

    key = _action(kinds, "key", "refuse every token signed by a key, forever", _revoke_key)
    key.add_argument("kid")

    every = _action(kinds, "all", "emergency: revoke every token", _revoke_all)
    every.add_argument("--issued-before", default=None, metavar="TIME", help="default: now")

    _action(subparsers, "block", "refuse every token of a subject until unblocked", _block)
    _action(subparsers, "unblock", "lift a block", _unblock)
    _action(subparsers, "delete-subject", "the account is deleted", _delete)
    bump = _action(subparsers, "bump-version", "refuse tokens below a version", _bump)
    bump.add_argument("--min-version", type=int, required=True, metavar="N")
    for name in ("block", "unblock", "delete-subject", "bump-version"):
        subparsers.choices[name].add_argument("sub")

    keys = subparsers.add_parser("keys", help="manage event signing keys")
    key_commands = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    generate = key_commands.add_parser(
        "generate", help="print a new signing key and its verification key"
    )
    generate.add_argument("--type", choices=("ed25519", "hmac"), default="ed25519")
    generate.add_argument("--kid", required=True, help="key id (no '.', ':' or ',')")
    generate.set_defaults(func=_generate_key)


def parse_time(text: str, *, option: str) -> datetime:
    """ISO 8601 with a timezone (``2030-01-01T00:00:00Z``) or epoch seconds."""
    try:
        return datetime.fromtimestamp(float(text), tz=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{option}: {text!r} is neither ISO 8601 nor epoch seconds") from None
    if value.tzinfo is None:
        raise CommandError(f"{option}: {text!r} needs a timezone, e.g. {text}Z")
    return value


def _action(
    parent: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    action: _Action,
) -> argparse.ArgumentParser:
    parser = parent.add_parser(name, help=help_text)
    parser.add_argument("--reason", default="", help="audit text (never put secrets here)")
    parser.set_defaults(func=lambda args: _run(action, args))
    return parser


def _run(action: _Action, args: argparse.Namespace) -> int:
    try:
        settings = PublisherSettings.from_env()
    except SettingsError as exc:
        raise CommandError(str(exc)) from None
    try:
        with Publisher(settings) as publisher:
            result = action(publisher, args)
            pending = publisher.pending_count() if result.queued else 0
    except InvalidRevocationError as exc:
        raise CommandError(str(exc)) from None
    except PublishError as exc:
        raise CommandError(str(exc), exit_code=1) from None
    if result.queued:
        print(
            f"queued {result.event_id} (Kafka did not ack in time; {pending} event(s) wait in "
            f"{settings.outbox_path} and are sent by the publisher holding its drain lease, or the "
            f"next one on that path)"
        )
        return EXIT_QUEUED
    print(
        f"published {result.event_id} topic={result.topic} "
        f"partition={result.partition} offset={result.offset}"
    )
    return 0


def _revoke_token(p: Publisher, a: argparse.Namespace) -> PublishResult:
    exp = parse_time(a.exp, option="--exp")
    return p.revoke_token(a.jti, expires_at=exp, sub=a.sub, reason=a.reason)


def _revoke_session(p: Publisher, a: argparse.Namespace) -> PublishResult:
    return p.revoke_session(a.sid, sub=a.sub, reason=a.reason)


def _revoke_subject(p: Publisher, a: argparse.Namespace) -> PublishResult:
    before = _optional_time(a.issued_before)
    return p.revoke_subject(a.sub, issued_before=before, reason=a.reason)


def _revoke_key(p: Publisher, a: argparse.Namespace) -> PublishResult:
    return p.revoke_key(a.kid, reason=a.reason)


def _revoke_all(p: Publisher, a: argparse.Namespace) -> PublishResult:
    return p.revoke_all(issued_before=_optional_time(a.issued_before), reason=a.reason)


def _block(p: Publisher, a: argparse.Namespace) -> PublishResult:
    return p.block_subject(a.sub, reason=a.reason)


def _unblock(p: Publisher, a: argparse.Namespace) -> PublishResult:
    return p.unblock_subject(a.sub, reason=a.reason)


def _delete(p: Publisher, a: argparse.Namespace) -> PublishResult:
    return p.delete_subject(a.sub, reason=a.reason)


def _bump(p: Publisher, a: argparse.Namespace) -> PublishResult:
    return p.bump_subject_version(a.sub, min_version=a.min_version, reason=a.reason)


def _optional_time(text: str | None) -> datetime | None:
    return None if text is None else parse_time(text, option="--issued-before")


def _generate_key(args: argparse.Namespace) -> int:
    # The key is built from the kid, not parsed from the spec: a kid with ':' split the spec
    # elsewhere ("a:b" -> kid 'a', "material is not base64url").
    try:
        if args.type == "hmac":
            material = secrets.token_bytes(32)
            key = SigningKey.hmac(args.kid, material)
        else:
            private = Ed25519PrivateKey.generate()
            key = SigningKey.ed25519(args.kid, private)
            material = private.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
    except KeySpecError as exc:
        raise CommandError(f"--kid {args.kid!r}: {exc}") from None
    spec = f"{args.kid}:{args.type}:{base64.urlsafe_b64encode(material).rstrip(b'=').decode()}"
    print(f"REVOCAST_SIGNING_KEY={spec}")
    print(f"REVOCAST_EVENT_KEYS={public_key_spec(key)}")
    return 0
