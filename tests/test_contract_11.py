"""Contract 1.1 seen from a host application: recovery prompts, issuer, QR codes, retries."""

from __future__ import annotations

import pyotp
import pytest
from support import ALICE, BOB, enrol_totp

from secmod.hookspecs import (
    Accepted,
    Challenge,
    Field,
    ModuleInfo,
    ModuleSettings,
    Prompt,
    Provisioning,
    RecoveryMethod,
    Rejected,
    SetupComplete,
    SetupPrompt,
    hookimpl,
)
from secmod.host import Enrolled, Outcome, UnknownModule


class WordSettings(ModuleSettings):
    clients: bool = True
    admins: bool = True


class WordModule:
    """A TOTP-like module that gives only an otpauth URI and records what it is told.

    Its recovery method ``spell`` asks for one field; ``legacy`` is declared by name, as a
    contract 1.0 module would.
    """

    def __init__(self) -> None:
        self.issuers: list[str] = []
        self.recover_answers: list[dict[str, str]] = []

    @hookimpl
    def configure(self):
        return ModuleInfo(
            name="word", friendly_name="Word", short_description="A word.", settings_model=WordSettings,
            recovery_methods=(
                RecoveryMethod(name="spell", label="Spell the word", prompt=Prompt(
                    message="Spell your word backwards", fields=(Field(name="backwards", label="Backwards"),),
                )),
                "legacy",
            ),
        )

    @hookimpl
    def setup_user(self, request):
        self.issuers.append(request.issuer)
        if request.answer is None:
            uri = f"otpauth://totp/{request.issuer}:{request.user.label}?secret=JBSWY3DPEHPK3PXPJBSWY3DP"
            return SetupPrompt(
                prompt=Prompt(message="Scan", fields=(Field(name="word", label="Word"),),
                              provisioning=Provisioning(secret="JBSWY3DPEHPK3PXPJBSWY3DP", uri=uri)),
            )
        return SetupComplete(state={"word": request.answer["word"]})

    @hookimpl
    def challenge(self, request):
        self.issuers.append(request.issuer)
        return Challenge(prompt=Prompt(message="Word", fields=(Field(name="word", label="Word"),)))

    @hookimpl
    def verify(self, request):
        self.issuers.append(request.issuer)
        return Accepted() if request.answer.get("word") == request.state["word"] else Rejected(reason="wrong_word")

    @hookimpl
    def recover(self, request):
        self.recover_answers.append(dict(request.answer))
        if request.method == "spell" and request.answer.get("backwards") == request.state["word"][::-1]:
            return Accepted(reason="spelled")
        return Rejected(reason="wrong_word")


@pytest.fixture
def word() -> WordModule:
    return WordModule()


@pytest.fixture
def word_host(make_host, word):
    return make_host({"totp": {"clients": False, "admins": False}}, issuer="Example Co",
                     host_kwargs={"modules": {"word": word}})


def enrol_word(host, user=ALICE, word="plover"):
    step = host.begin_setup(user, "word")
    return step, host.continue_setup(user, step.setup_id, {"word": word})


# -- 13.1: recovery methods declare their fields -----------------------------------


def test_recovery_methods_are_listed_with_the_backup_code_first(word_host):
    enrol_word(word_host)
    methods = word_host.recovery_methods(ALICE)
    assert [m.name for m in methods] == ["backup_code", "spell", "legacy"]
    backup = methods[0]
    assert [f.name for f in backup.prompt.fields] == ["code"]
    assert [f.name for f in methods[1].prompt.fields] == ["backwards"]
    # A contract 1.0 method by name is asked what 1.0 hosts asked.
    assert [f.name for f in methods[2].prompt.fields] == ["code", "next_code"]
    assert word_host.recovery_methods(BOB) == ()


def test_a_declared_method_is_served_with_its_own_fields(word_host, word):
    enrol_word(word_host)
    result = word_host.recover(ALICE, {"backwards": "revolp"}, method="spell")
    assert result.accepted and result.reason == "spelled"
    assert word.recover_answers == [{"backwards": "revolp"}]
    with pytest.raises(UnknownModule, match="'dance'"):
        word_host.recover(ALICE, {"backwards": "revolp"}, method="dance")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"name": "Re Sync"}, "simple lowercase name"),
        ({"label": " "}, "label"),
        ({"prompt": Prompt(message="nothing to ask")}, "ask for fields"),
        ({"prompt": Prompt(message="go", fields=(Field(name="a", label="A"),), redirect_url="https://x.test")},
         "not redirect"),
        ({"prompt": Prompt(message="twice", fields=(Field(name="a", label="A"), Field(name="a", label="B")))},
         "repeat"),
    ],
)
def test_a_malformed_recovery_method_is_refused_with_its_name(kwargs, error):
    fields = {"name": "resync", "label": "Resync", "prompt": Prompt(message="m", fields=(Field(name="c", label="C"),))}
    with pytest.raises(ValueError, match=error):
        RecoveryMethod(**{**fields, **kwargs})


def test_a_module_may_not_declare_the_hosts_backup_code_method():
    method = RecoveryMethod(name="backup_code", label="Mine", prompt=Prompt(message="m", fields=(Field(name="c", label="C"),)))
    with pytest.raises(ValueError, match="'word'.*the host's own"):
        ModuleInfo(name="word", friendly_name="W", short_description="w", recovery_methods=(method,))


def test_module_info_refuses_a_bare_string_for_recovery_methods():
    with pytest.raises(TypeError, match="'word'.*tuple of RecoveryMethod"):
        ModuleInfo(name="word", friendly_name="W", short_description="w", recovery_methods="resync")  # type: ignore[arg-type]


# -- 13.3: the host's issuer reaches modules ----------------------------------------


def test_the_issuer_setting_reaches_every_request(word_host, word):
    enrol_word(word_host)
    started = word_host.begin_challenge(ALICE)
    word_host.verify(ALICE, {"word": "plover"}, challenge_id=started.challenge_id)
    assert word.issuers and set(word.issuers) == {"Example Co"}


def test_totp_shows_the_host_issuer_unless_its_settings_override_it(make_host):
    host = make_host(issuer="Example Co")
    step = host.begin_setup(ALICE, "totp")
    assert pyotp.parse_uri(step.prompt.provisioning.uri).issuer == "Example Co"
    own = make_host({"totp": {"issuer": "Billing"}}, issuer="Example Co")
    step = own.begin_setup(BOB, "totp")
    assert pyotp.parse_uri(step.prompt.provisioning.uri).issuer == "Billing"


# -- 13.4: the host draws QR codes ---------------------------------------------------


def test_the_host_draws_the_qr_code_from_the_uri(word_host):
    step = word_host.begin_setup(ALICE, "word")
    provisioning = step.prompt.provisioning
    assert provisioning.qr_svg.startswith("<svg") and "</svg>" in provisioning.qr_svg
    assert provisioning.qr_terminal.strip()
    assert "JBSWY3DP" not in repr(step)


def test_totp_gets_its_qr_code_from_the_host(make_host):
    step = make_host().begin_setup(ALICE, "totp")
    assert step.prompt.provisioning.qr_svg.startswith("<svg")
    assert step.prompt.provisioning.qr_terminal.strip()


# -- 13.8: hidden fields carry a value --------------------------------------------------


def test_only_a_hidden_field_carries_a_value():
    hidden = Field(name="step", label="", kind="hidden", value="second")
    assert hidden.value == "second" and "second" not in repr(hidden)
    with pytest.raises(ValueError, match="only a hidden field"):
        Field(name="code", label="Code", value="123456")


# -- 13.9: retry semantics --------------------------------------------------------------


def test_a_rejected_totp_code_leaves_the_challenge_open(make_host, fake_clock):
    host = make_host()
    totp, _ = enrol_totp(host, ALICE, fake_clock)
    started = host.begin_challenge(ALICE)
    wrong = host.verify(ALICE, {"code": "000000" if totp.now() != "000000" else "111111"},
                        challenge_id=started.challenge_id)
    assert wrong.outcome is Outcome.REJECTED and wrong.challenge_open
    right = host.verify(ALICE, {"code": totp.at(fake_clock.now)}, challenge_id=started.challenge_id)
    assert right.accepted and not right.challenge_open


def test_a_rejected_one_shot_challenge_is_closed(make_host, pin_module):
    host = make_host(host_kwargs={"modules": {"pin": pin_module}})
    host.begin_setup(ALICE, "pin")
    started = host.begin_challenge(ALICE)
    wrong = host.verify(ALICE, {"nonce": "n-alice", "pin": "0000"}, challenge_id=started.challenge_id)
    assert wrong.outcome is Outcome.REJECTED and not wrong.challenge_open
    # Its pending data is spent: the same challenge can no longer succeed.
    again = host.verify(ALICE, {"nonce": "n-alice", "pin": "4711"}, challenge_id=started.challenge_id)
    assert not again.accepted and not again.challenge_open


def test_a_lockout_closes_the_challenge(make_host, fake_clock):
    host = make_host(throttle={"max_code_failures": 1})
    enrol_totp(host, ALICE, fake_clock)
    started = host.begin_challenge(ALICE)
    locked = host.verify(ALICE, {"code": "12345x"}, challenge_id=started.challenge_id)
    assert locked.outcome is Outcome.LOCKED and not locked.challenge_open


def test_word_module_enrols_through_the_host(word_host):
    _, enrolled = enrol_word(word_host)
    assert isinstance(enrolled, Enrolled)


# -- 13.5: modules use only secmod's public API ------------------------------------------


def test_no_module_package_imports_host_internals():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    internal = re.compile(r"^\s*(?:from|import)\s+secmod\.host\.\w+", re.M)
    sources = [*root.glob("plugins/*/secmod_*/**/*.py"), *root.glob("docs/examples/*/secmod_*/**/*.py")]
    assert sources
    offenders = [str(path.relative_to(root)) for path in sources if internal.search(path.read_text())]
    assert not offenders, f"modules reach into secmod.host internals: {offenders}"
