"""Timing of calls a module makes to its provider (Duo, YubiCloud), for the host's metrics.

A module wraps each network call to its provider::

    from secmod.hookspecs import provider_call

    with provider_call("duo", "health_check"):
        client.health_check()

With no observer registered (an embedded host without metrics) this costs one list test.
The host's metrics (``/metrics`` of ``secmod serve``) register an observer and keep a
histogram of the durations by provider, operation and whether the call raised.
Additive in contract 1.1: nothing about a call's result passes through here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

__all__ = ["ProviderCallObserver", "add_provider_observer", "provider_call"]

ProviderCallObserver = Callable[[str, str, float, bool], None]
"""Called as ``observer(provider, operation, seconds, ok)`` after each provider call."""

_observers: list[ProviderCallObserver] = []


def add_provider_observer(observer: ProviderCallObserver) -> Callable[[], None]:
    """Register ``observer`` (once); returns the function that removes it again."""
    if observer not in _observers:
        _observers.append(observer)

    def remove() -> None:
        if observer in _observers:
            _observers.remove(observer)

    return remove


@contextlib.contextmanager
def provider_call(provider: str, operation: str) -> Iterator[None]:
    """Time the ``with`` body as one call to ``provider``; ``ok`` is whether it raised."""
    if not _observers:
        yield
        return
    start = time.perf_counter()
    ok = False
    try:
        yield
        ok = True
    finally:
        elapsed = time.perf_counter() - start
        for observer in tuple(_observers):
            # An observer's failure must never turn a provider's answer into an error.
            with contextlib.suppress(Exception):
                observer(provider, operation, elapsed, ok)
