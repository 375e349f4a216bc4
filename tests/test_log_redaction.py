"""Third-party libraries' logs: the host masks what modules declare, for all of them at once."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from secmod.hookspecs import Audience, LogRedaction, User
from secmod.host import Enrolled
from secmod.host.redaction import REDACTED, redact_library_logs
from secmod_duo.testing.fake import FakeDuo
from secmod.testing.tls import LocalCA
from secmod_yubikey.testing.yubicloud_fake import FakeYubiCloud

DUO_USER = User(id="duo-1", audience=Audience.CLIENT, email="ann@example.com")
KEY_USER = User(id="key-1", audience=Audience.CLIENT, email="ben@example.com")


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeDuo, FakeYubiCloud]]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with LocalCA() as ca, FakeDuo(ca=ca) as duo, FakeYubiCloud() as cloud:
        yield duo, cloud


def test_with_duo_and_yubikey_loaded_no_code_reaches_any_debug_record(
    make_host: Any, fakes: tuple[FakeDuo, FakeYubiCloud], caplog: pytest.LogCaptureFixture
) -> None:
    """Once, each module put its own filter on urllib3's logger and the YubiKey one,
    rewriting records first, hid Duo's token URL from Duo's: duo_code and the signed
    client assertion reached the DEBUG log."""
    duo, cloud = fakes
    caplog.set_level(logging.DEBUG)
    host = make_host(
        {"duo": duo.settings("", clients=True), "yubikey": {"clients": True, **cloud.settings()}},
        clock=time.time, loading={"allow": ["duo", "yubikey"]},
    )
    secrets_seen: list[str] = []

    assert isinstance(host.begin_setup(DUO_USER, "duo"), Enrolled)
    started = host.begin_challenge(DUO_USER)
    callback = duo.come_back(started.prompt.redirect_url)
    secrets_seen += callback.values()
    assert host.verify(DUO_USER, callback, challenge_id=started.challenge_id).accepted

    key = cloud.new_key()
    otps = [key.press() for _ in range(3)]
    step = host.begin_setup(KEY_USER, "yubikey")
    assert isinstance(host.continue_setup(KEY_USER, step.setup_id, {"otp": otps[0]}), Enrolled)
    assert host.verify(KEY_USER, {"otp": otps[1]}).accepted
    cloud.bad_signature = True  # yubico_client then logs the response's parameters
    host.verify(KEY_USER, {"otp": otps[2]})
    secrets_seen += otps + [otp[12:] for otp in otps]

    loggers = {record.name for record in caplog.records}
    assert {"urllib3.connectionpool", "yubico.client"} <= loggers, "the libraries did log"
    text = "\n".join(record.getMessage() for record in caplog.records) + caplog.text
    token_requests = [line for line in text.splitlines() if "/oauth/v1/token" in line]
    assert token_requests and all("/oauth/v1/token?" + REDACTED in line for line in token_requests)
    assert "client_assertion" not in text
    for secret in secrets_seen:
        assert secret not in text


def test_a_record_is_masked_by_every_modules_pattern_not_only_the_first() -> None:
    name = "secmod.tests.redaction"
    redact_library_logs([LogRedaction(pattern=r"(?<=a=)\w+", loggers=(name,))])
    redact_library_logs([LogRedaction(pattern=r"(?<=b=)\w+", loggers=(name,))])
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger(name)
    handler = Keep()
    logger.addHandler(handler)
    try:
        logger.warning("GET /x?a=%s&b=%s", "secret1", "secret2")
        logger.warning("broken %s %s", "only-one")  # a library's bad format string
    finally:
        logger.removeHandler(handler)
    assert records[0].getMessage() == f"GET /x?a={REDACTED}&b={REDACTED}"
    assert len(logger.filters) == 1
    assert len(records) == 2


def test_a_bad_pattern_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"LogRedaction.pattern '\(' is not a regular expression"):
        LogRedaction(pattern="(")
