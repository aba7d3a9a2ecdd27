"""Listener lists: called outside any lock; a failing listener is logged and skipped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Listeners"]

_log = logging.getLogger("consumer_sdk")
T = TypeVar("T")


class Listeners(Generic[T]):
    """Copy-on-write list of callbacks; :meth:`notify` iterates a snapshot without locking."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._items: tuple[Callable[[T], object], ...] = ()

    def __bool__(self) -> bool:
        return bool(self._items)

    def add(self, fn: Callable[[T], object]) -> Callable[[], None]:
        """Register ``fn``; return a callable that removes it (safe to call twice)."""
        with self._lock:
            self._items = (*self._items, fn)

        def remove() -> None:
            with self._lock:
                items = list(self._items)
                if fn in items:
                    items.remove(fn)
                self._items = tuple(items)

        return remove

    def notify(self, value: T) -> None:
        for fn in self._items:
            try:
                fn(value)
            except Exception:
                _log.exception("%s listener %r failed", self._name, fn)
            except BaseException:
                # Off the main thread, SystemExit (sys.exit()) or the like would only end the
                # calling thread: the sync thread, silently, with the status left VALID and
                # no revocation applied again. On the main thread it means what it says.
                if threading.current_thread() is threading.main_thread():
                    raise
                _log.exception("%s listener %r failed", self._name, fn)

    def after_fork(self) -> None:
        self._lock = threading.Lock()
