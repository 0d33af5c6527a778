"""One resource per worker process, built on first use (after the fork, never at import) and
closed on demand: the pattern of the sending and the webhooks runtimes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


class _Closable(Protocol):
    def close(self) -> None: ...


R = TypeVar("R", bound=_Closable)


class ProcessLocal(Generic[R]):
    """Holds this process's ``R``; :meth:`get` builds it once, :meth:`reset` closes it."""

    def __init__(self, build: Callable[[], R]) -> None:
        self._build = build
        self._value: R | None = None

    def get(self) -> R:
        """This process's resource, built on first use."""
        if self._value is None:
            self._value = self._build()
        return self._value

    def reset(self) -> None:
        """Close and forget this process's resource (process shutdown, tests)."""
        if self._value is not None:
            self._value.close()
            self._value = None
