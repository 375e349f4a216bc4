"""The conformance suite every security module must pass.

A module author writes one small *driver* that plays the person and their device, and
subclasses :class:`ModuleContract` in a test file; pytest then collects every contract
test for that module::

    from secmod.testing import ModuleContract, ModuleDriver

    class EmailDriver(ModuleDriver):
        name = "email"
        def answer_setup(self, prompt, user): ...
        def answer_challenge(self, prompt, user): ...
        def wrong_answer(self, prompt, user): ...

    class TestEmailConformance(ModuleContract):
        @pytest.fixture
        def driver(self):
            return EmailDriver()

The suite only talks to the module through a real :class:`secmod.host.Host` on a
temporary SQLite file (the ``make_host`` fixture), so it checks what a person would
meet: the hooks, the host's sealing, throttling and compare-and-set, together.
See docs/testing-modules.md.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from pydantic import ValidationError

from secmod.hookspecs import (
    CONTRACT_VERSION,
    Audience,
    ModuleInfo,
    ModuleSettings,
    Prompt,
    RecoveryMethod,
    User,
)

__all__ = ["ModuleContract", "ModuleDriver", "Person", "find_leaks"]

MAX_SETUP_STEPS = 5
"""An enrolment that needs more answers than this is taken to be looping."""

SHORTEST_SECRET = 4
"""Values shorter than this ("1", "ok") are not searched for: they would match anywhere."""

HOSTILE_VALUES = (
    "",
    " ",
    "000000",
    "x" * 4096,
    "١٢٣٤٥٦",  # Arabic-Indic digits: str.isdigit() says yes, int() agrees, a code must not
    "12345\n6",
    "' OR '1'='1",
    "\x00\x00",
    "%s%s%s",
)
"""Answers no module may accept or crash on."""


class ModuleDriver:
    """Plays the person and their device for one module in the conformance suite.

    Subclass it next to your module's tests and give the suite an instance through a
    ``driver`` fixture. Every method gets the :class:`~secmod.hookspecs.Prompt` the
    person sees and the :class:`~secmod.hookspecs.User` they are, and returns the
    fields they would submit (``{field name: text}``).
    """

    name: ClassVar[str] = ""
    """The module's entry point name (``[modules.NAME]``)."""

    def module(self) -> object | None:
        """The module object to register without an entry point, or ``None`` (the
        default) to load the installed distribution through its entry point."""
        return None

    def settings(self) -> dict[str, Any]:
        """The ``[modules.NAME]`` table to run with; ``clients`` and ``admins`` are
        switched on by the suite."""
        return {}

    def answer_setup(self, prompt: Prompt, user: User) -> dict[str, str]:
        """Answer one enrolment prompt correctly (scan the QR code, type the code)."""
        raise NotImplementedError(f"{type(self).__name__} must answer setup prompts")

    def answer_challenge(self, prompt: Prompt, user: User) -> dict[str, str]:
        """Answer a login challenge correctly, with an answer never given before.

        A time-based device waits for its next code here (advance the fake clock).
        """
        raise NotImplementedError(f"{type(self).__name__} must answer challenges")

    def wrong_answer(self, prompt: Prompt, user: User) -> dict[str, str]:
        """A well-formed answer that is wrong (another code, another device)."""
        raise NotImplementedError(f"{type(self).__name__} must give a wrong answer")

    def answer_recovery(self, method: RecoveryMethod, user: User) -> dict[str, str]:
        """Answer one of the module's recovery methods correctly, with codes never given
        before (TOTP ``resync``: the code shown now, then the next one, after waiting for
        it). Needed only when the module declares recovery methods."""
        raise NotImplementedError(f"{type(self).__name__} must answer recovery method {method.name!r}")

    def wrong_recovery_answer(self, method: RecoveryMethod, user: User) -> dict[str, str]:
        """A well-formed answer to a recovery method with *every* field wrong.

        The suite also mixes it with a right answer one field at a time, so a module
        that ignores a field it asks for (a ``resync`` that checks only the first code)
        fails."""
        raise NotImplementedError(f"{type(self).__name__} must give a wrong answer to {method.name!r}")

    def secrets(self) -> Iterable[str]:
        """Values besides the answers and provisioned secrets (which the suite records
        itself) that must never leak: secret settings, device keys."""
        return ()


def _pattern(secret: str) -> re.Pattern[str]:
    # Bounded by non-alphanumerics, so a 6-digit code is not "found" inside a longer
    # number (a timestamp) or inside a base64 blob that happens to contain it.
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])")


def find_leaks(secrets: Iterable[str], texts: Iterable[str]) -> list[str]:
    """Every ``(secret, where)`` description of a secret found in one of ``texts``."""
    patterns = [(s, _pattern(s)) for s in set(secrets) if len(s) >= SHORTEST_SECRET]
    return [
        f"{secret!r} in {text[:200]!r}" for text in texts for secret, pattern in patterns if pattern.search(text)
    ]


@dataclass
class Person:
    """One person of the suite: a user on a host, driven by the driver.

    Records every secret that passes through their hands (answers, provisioned
    secrets, backup codes) so the leak checks know what to look for.
    """

    host: Any  # secmod.host.Host; Any so that importing this module stays cheap
    user: User
    driver: ModuleDriver
    secrets: set[str] = field(default_factory=set)
    seen: list[object] = field(default_factory=list)
    """Everything the host handed back, for the repr checks."""

    @property
    def module(self) -> str:
        return self.driver.name

    def remember(self, values: Iterable[str]) -> None:
        self.secrets.update(str(v) for v in values if v)

    def _answer(self, answer: Mapping[str, str]) -> dict[str, str]:
        self.remember(answer.values())
        return dict(answer)

    def _saw(self, result: Any) -> Any:
        self.seen.append(result)
        provisioning = getattr(getattr(result, "prompt", None), "provisioning", None)
        if provisioning is not None:
            self.remember([provisioning.secret, provisioning.uri])
        self.remember(getattr(result, "backup_codes", ()) or getattr(result, "new_backup_codes", ()))
        return result

    def begin_setup(self) -> Any:
        return self._saw(self.host.begin_setup(self.user, self.module))

    def answer_setup(self, step: Any, answer: Mapping[str, str]) -> Any:
        return self._saw(self.host.continue_setup(self.user, step.setup_id, self._answer(answer)))

    def enrol(self) -> Any:
        """Enrol from start to end with correct answers; returns :class:`Enrolled`."""
        from secmod.host import Enrolled

        step = self.begin_setup()
        for _ in range(MAX_SETUP_STEPS):
            if isinstance(step, Enrolled):
                return step
            step = self.answer_setup(step, self.driver.answer_setup(step.prompt, self.user))
            if not isinstance(step, Enrolled) and step.error:
                pytest.fail(f"the module refused the driver's correct setup answer: {step.error!r}")
        pytest.fail(f"enrolment with {self.module!r} did not finish after {MAX_SETUP_STEPS} answers")

    def challenge(self) -> Any:
        return self._saw(self.host.begin_challenge(self.user))

    def verify(self, started: Any, answer: Mapping[str, str]) -> Any:
        return self._saw(self.host.verify(self.user, self._answer(answer), challenge_id=started.challenge_id))

    def right_answer(self, started: Any) -> dict[str, str]:
        return self._answer(self.driver.answer_challenge(started.prompt, self.user))

    def wrong_answer(self, prompt: Prompt) -> dict[str, str]:
        return self._answer(self.driver.wrong_answer(prompt, self.user))

    def login(self) -> Any:
        """One whole second step with the right answer; returns the VerifyResult."""
        started = self.challenge()
        return self.verify(started, self.right_answer(started))

    def recovery_methods(self) -> tuple[RecoveryMethod, ...]:
        """The module's own recovery methods (not the host's backup code)."""
        return tuple(self.host.modules[self.module].info.recovery_methods)

    def right_recovery(self, method: RecoveryMethod) -> dict[str, str]:
        return self._answer(self.driver.answer_recovery(method, self.user))

    def wrong_recovery(self, method: RecoveryMethod) -> dict[str, str]:
        return self._answer(self.driver.wrong_recovery_answer(method, self.user))

    def recover(self, method: RecoveryMethod, answer: Mapping[str, str]) -> Any:
        return self._saw(self.host.recover(self.user, self._answer(answer), method=method.name))


def _all_rows(host: Any) -> Iterator[str]:
    """Every row of every table of the host's database, as text."""
    metadata = sa.MetaData()
    metadata.reflect(host.engine)
    with host.engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                yield f"{table.name}: {tuple(row)}"


class ModuleContract:
    """The conformance suite: subclass it in a test file and provide ``driver``.

    Override ``host_settings`` to run every test with other ``secmod.toml`` keys
    (``database_url`` for PostgreSQL, say).
    """

    # The suite's own fixtures, so that a module's tests need no plugin (and a host
    # application's fixtures of the same names are never replaced by ours).
    @pytest.fixture
    def fake_clock(self) -> Any:
        from .clock import FakeClock

        return FakeClock()

    @pytest.fixture
    def make_host(self, tmp_path: Any, fake_clock: Any) -> Iterator[Callable[..., Any]]:
        from .plugin import host_factory

        with host_factory(tmp_path, fake_clock) as factory:
            yield factory

    @pytest.fixture
    def driver(self) -> ModuleDriver:
        raise pytest.UsageError(
            f"{type(self).__name__} needs a `driver` fixture returning a ModuleDriver for the module under test"
        )

    @pytest.fixture
    def host_settings(self) -> dict[str, Any]:
        """Extra ``secmod.toml`` keys for every host of the suite."""
        return {}

    @pytest.fixture
    def start_host(self, make_host: Callable[..., Any], driver: ModuleDriver, host_settings: dict[str, Any]) -> Callable[..., Any]:
        """Start a host on the test's database with only the module under test.

        Call it again (after closing the first) for a restart: same database, same key file.
        """
        if not driver.name:
            raise pytest.UsageError(f"{type(driver).__name__}.name must be the module's entry point name")

        def start(**overrides: Any) -> Any:
            table = {**driver.settings(), "clients": True, "admins": True}
            plugin = driver.module()
            host_kwargs = {"modules": {driver.name: plugin}, "entry_points": False} if plugin is not None else {}
            # The allow list keeps other installed modules (and their imports) out of the test.
            settings = {"loading": {"allow": [driver.name]}, **host_settings, **overrides}
            return make_host({driver.name: table}, host_kwargs=host_kwargs, **settings)

        return start

    @pytest.fixture
    def host(self, start_host: Callable[..., Any]) -> Any:
        return start_host()

    @pytest.fixture
    def person(self, host: Any, driver: ModuleDriver) -> Person:
        return Person(host, User(id="client-1", audience=Audience.CLIENT, email="ada@example.test", name="Ada"), driver)

    # -- configure ---------------------------------------------------------------

    def test_configure_describes_the_module(self, host: Any, driver: ModuleDriver) -> None:
        info = host.modules[driver.name].info
        assert isinstance(info, ModuleInfo)
        assert info.name == driver.name
        assert info.friendly_name.strip(), "friendly_name is shown in every list of methods"
        assert info.short_description.strip(), "short_description is shown when choosing a method"
        assert Version(CONTRACT_VERSION) in SpecifierSet(info.contract)
        model = info.settings_model
        assert issubclass(model, ModuleSettings)
        settings = host.module_settings[driver.name]
        assert isinstance(settings, model) and settings.clients and settings.admins

    def test_settings_model_refuses_unknown_keys(self, host: Any, driver: ModuleDriver) -> None:
        # A typo in secmod.toml ("api_hostnmae") must stop the host, not be ignored.
        model = host.modules[driver.name].info.settings_model
        with pytest.raises(ValidationError):
            model.model_validate({**driver.settings(), "no_such_setting": True})
        assert model.model_config.get("frozen"), "settings are shared by every request: keep them frozen"

    def test_activate_accepts_working_settings(self, host: Any, driver: ModuleDriver) -> None:
        activation = host.activate(driver.name)
        assert isinstance(activation.message, str) and activation.message.strip()

    # -- enrolment and login -----------------------------------------------------

    @pytest.mark.parametrize("audience", list(Audience))
    def test_setup_then_verify_round_trips(self, host: Any, driver: ModuleDriver, audience: Audience) -> None:
        from secmod.host import Enrolled, LoginStep, Outcome

        person = Person(host, User(id=f"{audience.value}-7", audience=audience, email="grace@example.test"), driver)
        assert isinstance(person.enrol(), Enrolled)
        state = host.login_state(person.user)
        assert (state.step, state.module) == (LoginStep.CHALLENGE, driver.name)
        result = person.login()
        assert result.outcome is Outcome.ACCEPTED, result
        events = {(e.event, e.outcome) for e in host.audit_events(user=person.user)}
        assert {("enrol", "ok"), ("verify", "ok")} <= events

    def test_wrong_setup_answer_is_refused_and_can_be_retried(self, host: Any, person: Person) -> None:
        from secmod.host import Enrolled

        step = person.begin_setup()
        if isinstance(step, Enrolled):
            pytest.skip(f"{person.module!r} enrols without asking the person anything")
        refused = person.answer_setup(step, person.wrong_answer(step.prompt))
        # The host turns a ModuleError into `error`; any other exception would have
        # raised ModuleUnavailable here instead.
        assert not isinstance(refused, Enrolled)
        assert refused.error.strip(), "a refused setup answer needs a message for the person"
        assert host.status(person.user) is None, "nothing is stored before the device is proven"
        assert any(e.event == "enrol" and e.outcome == "fail" and e.reason for e in host.audit_events(user=person.user))
        # Same setup step, now the right answer: the person keeps their QR code.
        done = person.answer_setup(refused, person.driver.answer_setup(refused.prompt, person.user))
        while not isinstance(done, Enrolled):
            assert not done.error, done.error
            done = person.answer_setup(done, person.driver.answer_setup(done.prompt, person.user))

    def test_wrong_answer_is_rejected(self, host: Any, person: Person) -> None:
        from secmod.host import Outcome

        person.enrol()
        started = person.challenge()
        result = person.verify(started, person.wrong_answer(started.prompt))
        assert result.outcome is Outcome.REJECTED, result
        assert result.message.strip()
        # The wrong answer does not spoil the next, right one.
        assert person.login().outcome is Outcome.ACCEPTED

    def test_hostile_answers_are_rejected_without_crashing(
        self, start_host: Callable[..., Any], driver: ModuleDriver
    ) -> None:
        from secmod.host import Enrolled, Outcome

        host = start_host(throttle={"max_code_failures": 1000})
        person = Person(host, User(id="client-9", audience=Audience.CLIENT, email="eve@example.test"), driver)
        step = person.begin_setup()
        if not isinstance(step, Enrolled):
            for answer in self._hostile_answers(step.prompt):
                refused = person.answer_setup(step, answer)
                assert not isinstance(refused, Enrolled), f"setup accepted {answer!r}"
                assert refused.error.strip()
        person.enrol()
        for answer in self._hostile_answers(person.challenge().prompt):
            started = person.challenge()
            result = person.verify(started, answer)
            assert result.outcome is Outcome.REJECTED, f"{answer!r} gave {result}"
            assert result.reason not in {"module_unavailable", "module_error"}, f"{answer!r} crashed the module"
        # The module's own recovery methods (TOTP: resync) face the same input.
        for method in person.recovery_methods():
            for answer in self._hostile_answers(method.prompt):
                result = host.recover(person.user, answer, method=method.name)
                assert result.outcome is Outcome.REJECTED, f"recover {method.name} with {answer!r} gave {result}"
                assert result.reason not in {"module_unavailable", "module_error"}, f"recover {method.name} crashed"
        crashes = [e for e in host.audit_events(limit=1000) if e.reason == "module_error"]
        assert not crashes, f"the module raised something other than ModuleError: {crashes}"

    @staticmethod
    def _hostile_answers(prompt: Prompt) -> list[dict[str, str]]:
        names = [f.name for f in prompt.fields] or ["code"]
        answers: list[dict[str, str]] = [{}, {"unexpected_field": "123456"}]
        answers += [{name: value for name in names} for value in HOSTILE_VALUES]
        return answers

    # -- once only ---------------------------------------------------------------

    def test_accepted_answer_is_not_accepted_twice(self, person: Person) -> None:
        from secmod.host import Outcome

        person.enrol()
        started = person.challenge()
        answer = person.right_answer(started)
        assert person.verify(started, answer).outcome is Outcome.ACCEPTED
        assert person.verify(started, answer).outcome is not Outcome.ACCEPTED, "same challenge, same answer"
        again = person.challenge()
        assert person.verify(again, answer).outcome is not Outcome.ACCEPTED, "new challenge, old answer"

    def test_racing_submissions_are_accepted_once(self, person: Person) -> None:
        from secmod.host import Outcome

        person.enrol()
        first = person.challenge()
        answer = person.right_answer(first)
        second = person.challenge()
        # Four submissions of one answer at once, two per challenge, as a double-clicked
        # form or a replaying attacker would send them.
        attempts = [first, first, second, second]
        barrier = threading.Barrier(len(attempts))
        results: list[Any] = [None] * len(attempts)
        errors: list[BaseException] = []

        def submit(index: int) -> None:
            try:
                barrier.wait(timeout=10)
                results[index] = person.host.verify(person.user, answer, challenge_id=attempts[index].challenge_id)
            except BaseException as error:  # reported below; a thread must not die silently
                errors.append(error)

        threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(attempts))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        accepted = [r for r in results if r is not None and r.outcome is Outcome.ACCEPTED]
        assert len(accepted) == 1, results

    # -- recovery methods (contract 1.1) ----------------------------------------------

    @staticmethod
    def _methods_of(person: Person) -> tuple[RecoveryMethod, ...]:
        methods = person.recovery_methods()
        if not methods:
            pytest.skip(f"{person.module!r} declares no recovery methods")
        return methods

    def test_recovery_methods_are_offered_with_their_prompts(self, host: Any, person: Person) -> None:
        methods = self._methods_of(person)
        person.enrol()
        offered = host.recovery_methods(person.user)
        assert [m.name for m in offered] == ["backup_code", *(m.name for m in methods)]
        for method in methods:
            assert isinstance(method, RecoveryMethod) and method.label.strip() and method.prompt.message.strip()
            assert method.prompt.fields, f"{method.name}: a recovery prompt asks for something"

    def test_recovery_answer_is_accepted_once(self, person: Person) -> None:
        from secmod.host import Outcome

        person.enrol()
        for method in self._methods_of(person):
            answer = person.right_recovery(method)
            result = person.recover(method, answer)
            assert result.outcome is Outcome.ACCEPTED, f"{method.name}: the driver's right answer gave {result}"
            again = person.recover(method, answer)
            assert again.outcome is not Outcome.ACCEPTED, f"{method.name}: the same answer was accepted twice"
            # Recovering leaves the person able to log in as usual.
            assert person.login().outcome is Outcome.ACCEPTED, f"after {method.name} the next login failed"

    def test_every_field_of_a_recovery_method_is_checked(
        self, start_host: Callable[..., Any], driver: ModuleDriver
    ) -> None:
        # A right answer with any one field replaced by a wrong value must be refused:
        # a resync that checks only the first of its two codes lets one leaked code in.
        from secmod.host import Outcome

        host = start_host(throttle={"max_code_failures": 1000})
        person = Person(host, User(id="client-5", audience=Audience.CLIENT, email="kim@example.test"), driver)
        person.enrol()
        for method in self._methods_of(person):
            wrong = person.wrong_recovery(method)
            right = person.right_recovery(method)
            for field_ in method.prompt.fields:
                if wrong.get(field_.name) == right.get(field_.name):
                    pytest.fail(f"{method.name}: the driver's wrong answer has the right {field_.name!r}")
                mixed = {**right, field_.name: wrong.get(field_.name, "")}
                result = person.recover(method, mixed)
                assert result.outcome is Outcome.REJECTED, (
                    f"{method.name}: accepted with a wrong {field_.name!r}: the module does not check it"
                )
            assert person.recover(method, right).outcome is Outcome.ACCEPTED, f"{method.name}: right answer refused"

    def test_racing_recovery_answers_are_accepted_once(self, person: Person) -> None:
        from secmod.host import Outcome

        person.enrol()
        for method in self._methods_of(person):
            results = self._race(4, person.host.recover, person.user, person.right_recovery(method), method=method.name)
            accepted = [r for r in results if r.outcome is Outcome.ACCEPTED]
            assert len(accepted) == 1, f"{method.name}: {results}"

    @staticmethod
    def _race(count: int, call: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Any]:
        """``count`` threads make the same call at the same instant; their results."""
        barrier = threading.Barrier(count)
        results: list[Any] = []
        errors: list[BaseException] = []

        def submit() -> None:
            try:
                barrier.wait(timeout=10)
                results.append(call(*args, **kwargs))
            except BaseException as error:  # reported below; a thread must not die silently
                errors.append(error)

        threads = [threading.Thread(target=submit) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        assert len(results) == count, f"{count - len(results)} submissions did not finish"
        return results

    def test_wrong_recovery_answers_are_throttled(self, host: Any, driver: ModuleDriver) -> None:
        from secmod.host import Outcome

        limit = host.settings.throttle.max_code_failures
        methods = self._methods_of(Person(host, User(id="client-0", audience=Audience.CLIENT), driver))
        for index, method in enumerate(methods):
            # One person per method: a lockout is per person.
            person = Person(host, User(id=f"client-t{index}", audience=Audience.CLIENT, email="lee@example.test"), driver)
            person.enrol()
            results = [person.recover(method, person.wrong_recovery(method)) for _ in range(limit)]
            assert [r.outcome for r in results[:-1]] == [Outcome.REJECTED] * (limit - 1), results
            assert results[-1].outcome is Outcome.LOCKED, f"{method.name}: {limit} wrong answers did not lock"
            locked = person.recover(method, person.right_recovery(method))
            assert locked.outcome is Outcome.LOCKED, f"{method.name}: judged an answer during a lockout"

    # -- restart -----------------------------------------------------------------

    def test_state_survives_a_host_restart(self, start_host: Callable[..., Any], host: Any, person: Person) -> None:
        from secmod.host import LoginStep, Outcome

        person.enrol()
        started = person.challenge()
        answer = person.right_answer(started)
        assert person.verify(started, answer).outcome is Outcome.ACCEPTED
        host.close()
        restarted = Person(start_host(), person.user, person.driver)
        assert restarted.host.login_state(person.user).step is LoginStep.CHALLENGE
        replay = restarted.challenge()
        assert restarted.verify(replay, answer).outcome is not Outcome.ACCEPTED, "a restart forgot a used answer"
        assert restarted.login().outcome is Outcome.ACCEPTED

    def test_enrolling_again_keeps_the_person_able_to_log_in(self, host: Any, person: Person) -> None:
        # A new phone, a second key: the second enrolment replaces the first, in one step.
        from secmod.host import Outcome

        person.enrol()
        assert person.login().outcome is Outcome.ACCEPTED
        person.enrol()
        assert host.status(person.user).module == person.module
        assert person.login().outcome is Outcome.ACCEPTED

    def test_disable_forgets_the_person(self, host: Any, person: Person) -> None:
        from secmod.host import LoginStep

        person.enrol()
        assert host.disable(person.user)
        assert host.login_state(person.user).step is not LoginStep.CHALLENGE
        assert not [e for e in host.audit_events(user=person.user) if e.event == "forget_user"], (
            "forget_user raised; it must tidy up quietly"
        )

    # -- nothing leaks -----------------------------------------------------------

    def test_no_secret_in_audit_logs_errors_or_reprs(
        self, host: Any, person: Person, driver: ModuleDriver, caplog: pytest.LogCaptureFixture
    ) -> None:
        from secmod.host import Enrolled, SecmodError

        caplog.set_level(logging.DEBUG)
        errors: list[BaseException] = []
        step = person.begin_setup()
        if not isinstance(step, Enrolled):
            person.answer_setup(step, person.wrong_answer(step.prompt))
        person.enrol()
        started = person.challenge()
        person.verify(started, person.wrong_answer(started.prompt))
        started = person.challenge()
        answer = person.right_answer(started)
        person.verify(started, answer)
        person.verify(started, answer)
        for method in person.recovery_methods():
            person.recover(method, person.wrong_recovery(method))
            person.recover(method, person.right_recovery(method))
        try:
            person.host.continue_setup(person.user, "no-such-setup-step", answer)
        except SecmodError as error:
            errors.append(error)
        person.remember(driver.secrets())
        assert person.secrets, "the driver gave no answers to look for"

        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        texts = [formatter.format(record) for record in caplog.records]
        texts += [str(event.model_dump()) for event in host.audit_events(limit=1000)]
        texts += list(_all_rows(host))
        texts += [repr(obj) for obj in person.seen]
        texts += [f"{error!r} {error}" for error in errors]
        texts += [repr(host.module_settings[driver.name]), repr(host.modules[driver.name])]
        texts += [f"{getattr(r, 'message', '')} {getattr(r, 'detail', '')}" for r in person.seen if hasattr(r, "outcome")]
        texts += [getattr(r, "error", "") for r in person.seen]
        leaks = find_leaks(person.secrets, texts)
        assert not leaks, "secrets leaked:\n" + "\n".join(leaks)
