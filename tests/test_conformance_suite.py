"""The conformance suite catches what it promises to catch.

A small counter-code module is run through ``ModuleContract`` once as written and
once per deliberate flaw (accepting a code twice, logging codes, crashing on odd
input, raising something other than ModuleError, a resync that checks only the first of
its two codes); each flaw must fail the contract
tests that guard against it, and the flawless module must pass them all.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

MODULE_AND_SUITE = '''
import hashlib
import logging
import secrets

import pytest

from secmod.hookspecs import (
    Accepted, Challenge, Field, ModuleError, ModuleInfo, Prompt, Provisioning, RecoveryMethod,
    Rejected, SetupComplete, SetupPrompt, hookimpl,
)
from secmod.testing import ModuleContract, ModuleDriver

log = logging.getLogger("counter")
CODE = Field(name="code", label="Code")
RESYNC = RecoveryMethod(name="resync", label="Resync", prompt=Prompt(
    message="Two consecutive codes", fields=(CODE, Field(name="next_code", label="Next code")),
))


def code(secret, n):
    return hashlib.sha256(f"{secret}:{n}".encode()).hexdigest()[:8]


class Counter:
    def __init__(self, flaws):
        self.flaws = flaws

    @hookimpl
    def configure(self):
        return ModuleInfo(name="counter", friendly_name="Counter", short_description="Counter codes.",
                          recovery_methods=(RESYNC,))

    @hookimpl
    def activate(self, request):
        from secmod.hookspecs import Activation
        return Activation(message="nothing to check")

    @hookimpl
    def setup_user(self, request):
        if request.pending is None:
            secret = secrets.token_hex(16)
            prompt = Prompt(message="Keep this secret", fields=(CODE,), provisioning=Provisioning(secret=secret))
            return SetupPrompt(prompt=prompt, pending={"secret": secret})
        if request.answer.get("code") != code(request.pending["secret"], 0):
            if "setup_raises_value_error" in self.flaws:
                raise ValueError("not the code")
            raise ModuleError("That is not the code.", reason="wrong_code")
        return SetupComplete(state={"secret": request.pending["secret"], "next": 1})

    @hookimpl
    def challenge(self, request):
        return Challenge(prompt=Prompt(message="Next code?", fields=(CODE,)))

    @hookimpl
    def verify(self, request):
        given = request.answer.get("code")
        if "logs_codes" in self.flaws:
            log.info("checking code %s", given)
        if "crashes_on_odd_input" in self.flaws:
            request.answer["code"].encode("ascii")
        first = request.state["next"]
        for n in range(first, first + 3):
            if given == code(request.state["secret"], n):
                if "accepts_twice" in self.flaws:
                    return Accepted()
                return Accepted(state={**request.state, "next": n + 1})
        return Rejected(reason="wrong_code")

    @hookimpl
    def recover(self, request):
        if request.method != "resync":
            return None
        secret, first = request.state["secret"], request.state["next"]
        for n in range(first, first + 50):
            if request.answer.get("code") == code(secret, n):
                if "resync_single_code" in self.flaws or request.answer.get("next_code") == code(secret, n + 1):
                    return Accepted(state={**request.state, "next": n + 2}, reason="resync")
        return Rejected(reason="resync_failed")


class CounterDriver(ModuleDriver):
    name = "counter"

    def __init__(self, flaws):
        self.flaws, self.secret, self.n = flaws, None, 0

    def module(self):
        return Counter(self.flaws)

    def answer_setup(self, prompt, user):
        self.secret, self.n = prompt.provisioning.secret, 1
        return {"code": code(self.secret, 0)}

    def answer_challenge(self, prompt, user):
        self.n += 1
        return {"code": code(self.secret, self.n - 1)}

    def wrong_answer(self, prompt, user):
        return {"code": "zzzzzzzz"}

    def answer_recovery(self, method, user):
        skipped = self.n + 10  # the device ran ahead of the module
        self.n = skipped + 2
        return {"code": code(self.secret, skipped), "next_code": code(self.secret, skipped + 1)}

    def wrong_recovery_answer(self, method, user):
        return {"code": "zzzzzzzz", "next_code": "yyyyyyyy"}


def suite_for(*flaws):
    class Suite(ModuleContract):
        @pytest.fixture
        def driver(self):
            return CounterDriver(set(flaws))
    return Suite


TestFlawless = suite_for()
TestAcceptsTwice = suite_for("accepts_twice")
TestLogsCodes = suite_for("logs_codes")
TestCrashesOnOddInput = suite_for("crashes_on_odd_input")
TestSetupRaisesValueError = suite_for("setup_raises_value_error")
TestResyncSingleCode = suite_for("resync_single_code")
'''

CAUGHT_BY = {
    "TestAcceptsTwice": {
        "test_accepted_answer_is_not_accepted_twice",
        "test_racing_submissions_are_accepted_once",
        "test_state_survives_a_host_restart",
    },
    "TestLogsCodes": {"test_no_secret_in_audit_logs_errors_or_reprs"},
    "TestCrashesOnOddInput": {"test_hostile_answers_are_rejected_without_crashing"},
    "TestSetupRaisesValueError": {"test_wrong_setup_answer_is_refused_and_can_be_retried"},
    "TestResyncSingleCode": {"test_every_field_of_a_recovery_method_is_checked"},
}


def test_each_flaw_fails_the_tests_that_guard_against_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_counter=MODULE_AND_SUITE)
    run = pytester.inline_run("-p", "no:cacheprovider", "-W", "error")
    failed: dict[str, set[str]] = {}
    for report in run.getfailures():
        _, suite, test = report.nodeid.split("::")
        failed.setdefault(suite, set()).add(test.split("[")[0])
    passed, _, _ = run.listoutcomes()
    assert "TestFlawless" not in failed, failed.get("TestFlawless")
    assert len([r for r in passed if "::TestFlawless::" in r.nodeid]) == 19
    for suite, guards in CAUGHT_BY.items():
        assert guards <= failed.get(suite, set()), f"{suite}: expected {guards} to fail, failed {failed.get(suite)}"
