"""The relying party: from [web] base_url, overridable, and refused where browsers refuse it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from secmod.hookspecs import Audience, User
from secmod.host import Host, ModuleUnavailable
from secmod.settings import ConfigError
from secmod_webauthn import WebAuthnSettings

ADA = User(id="client-1", audience=Audience.CLIENT, email="ada@example.test")


@pytest.fixture
def start(make_host: Callable[..., Host]) -> Callable[..., Host]:
    def start(base_url: str | None = None, **table: Any) -> Host:
        web = {"web": {"base_url": base_url}} if base_url else {}
        return make_host(
            {"webauthn": {"clients": True, **table}}, loading={"allow": ["webauthn"]}, **web
        )

    return start


def test_default_relying_party_is_localhost(start: Callable[..., Host]) -> None:
    host = start()
    settings = host.module_settings["webauthn"]
    assert (settings.effective_rp_id, settings.effective_origin) == (
        "localhost",
        "http://localhost:8000",
    )
    assert (
        host.activate("webauthn").message
        == "Relying party localhost, origin http://localhost:8000."
    )


@pytest.mark.parametrize(
    ("base_url", "rp_id", "origin"),
    [
        ("https://portal.example.com/whmcs/", "portal.example.com", "https://portal.example.com"),
        (
            "https://Portal.Example.com:8443",
            "portal.example.com",
            "https://portal.example.com:8443",
        ),
        ("http://localhost:8123", "localhost", "http://localhost:8123"),
    ],
)
def test_relying_party_comes_from_base_url(
    start: Callable[..., Host], base_url: str, rp_id: str, origin: str
) -> None:
    settings = start(base_url).module_settings["webauthn"]
    assert (settings.effective_rp_id, settings.effective_origin) == (rp_id, origin)


def test_rp_id_may_be_a_parent_domain_of_the_origin(start: Callable[..., Host]) -> None:
    host = start("https://portal.example.com", rp_id="example.com")
    assert host.module_settings["webauthn"].effective_rp_id == "example.com"
    assert "example.com" in host.activate("webauthn").message


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"rp_id": "other.example"}, "must be the origin's host"),
        ({"rp_id": "example.com:443"}, "bare domain name"),
        ({"rp_id": "https://example.com"}, "bare domain name"),
        ({"origin": "https://portal.example.com/login"}, "no path"),
        ({"origin": "portal.example.com"}, "not an http(s) address"),
    ],
)
def test_inconsistent_relying_party_stops_the_host(
    start: Callable[..., Host], table: dict[str, str], words: str
) -> None:
    with pytest.raises(ConfigError) as error:
        start("https://portal.example.com", **table)
    assert words in str(error.value) and "[modules.webauthn]" in str(error.value)


@pytest.mark.parametrize(
    "base_url", ["http://127.0.0.1:8000", "http://[::1]:8000", "https://10.0.0.5"]
)
def test_an_ip_address_cannot_be_the_relying_party(
    start: Callable[..., Host], base_url: str
) -> None:
    host = start(base_url)
    with pytest.raises(ModuleUnavailable) as error:
        host.activate("webauthn")
    assert "IP address" in str(error.value) and "localhost" in str(error.value)
    with pytest.raises(ModuleUnavailable) as refused:
        host.begin_setup(ADA, "webauthn")
    assert "IP address" in str(refused.value)


def test_plain_http_is_refused_except_on_localhost(start: Callable[..., Host]) -> None:
    host = start("http://portal.example.com")
    with pytest.raises(ModuleUnavailable) as error:
        host.activate("webauthn")
    assert "https" in str(error.value)


def test_module_switched_off_does_not_stop_a_host_on_an_ip_address(
    make_host: Callable[..., Host],
) -> None:
    host = make_host({"webauthn": {}}, web={"base_url": "http://127.0.0.1:8000"})
    assert not host.module_settings["webauthn"].enabled_for(Audience.CLIENT)


def test_settings_validated_without_the_hosts_context_fall_back_to_localhost() -> None:
    settings = WebAuthnSettings.model_validate({})
    assert (settings.effective_rp_id, settings.effective_origin) == (
        "localhost",
        "http://localhost:8000",
    )


def test_derived_values_are_not_written_down(start: Callable[..., Host]) -> None:
    # The admin form writes back what the model holds: a derived relying party must stay
    # empty there, or it would be pinned to today's address when the site moves.
    settings = start("https://portal.example.com").module_settings["webauthn"]
    assert (settings.rp_id, settings.origin) == ("", "")
    assert settings.model_dump()["rp_id"] == "" and "portal" not in str(settings.model_dump())
