"""provider_call: modules time their provider calls; observers never change the outcome."""

from __future__ import annotations

import pytest
from secmod.hookspecs import add_provider_observer, provider_call


def test_observers_see_each_call_and_whether_it_raised() -> None:
    seen: list[tuple[str, str, bool]] = []
    remove = add_provider_observer(
        lambda provider, operation, seconds, ok: seen.append((provider, operation, ok))
    )
    try:
        with provider_call("duo", "health_check"):
            pass
        with pytest.raises(ConnectionError), provider_call("yubicloud", "verify"):
            raise ConnectionError("the provider is down")
    finally:
        remove()
    assert seen == [("duo", "health_check", True), ("yubicloud", "verify", False)]
    with provider_call("duo", "health_check"):
        pass
    assert len(seen) == 2  # removed: not called any more


def test_a_failing_observer_never_turns_an_answer_into_an_error() -> None:
    def broken(provider: str, operation: str, seconds: float, ok: bool) -> None:
        raise RuntimeError("metrics backend gone")

    remove = add_provider_observer(broken)
    try:
        with provider_call("duo", "token_exchange"):
            answer = "allow"
        with pytest.raises(TimeoutError), provider_call("duo", "token_exchange"):
            raise TimeoutError  # the module's own exception, not the observer's
    finally:
        remove()
    assert answer == "allow"


def test_registering_twice_calls_once() -> None:
    calls: list[str] = []

    def observer(provider: str, operation: str, seconds: float, ok: bool) -> None:
        calls.append(operation)

    remove = add_provider_observer(observer)
    add_provider_observer(observer)
    try:
        with provider_call("duo", "health_check"):
            pass
    finally:
        remove()
    assert calls == ["health_check"]
