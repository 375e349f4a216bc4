"""The guarantees, tried as an attacker would: bursts of concurrent guesses, crashing
modules, a lost key file. Threads share one Host; processes each have their own, as
several workers of a web host do. Both on SQLite and on PostgreSQL."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from secmod.hookspecs import Accepted, Audience, User
from secmod.host import Host, Outcome, SetupExpired
from secmod.settings import SecmodSettings
from support import ALICE, GuessModule, enrol_totp

BURST = 50
PROCESSES = 8


@pytest.fixture
def settings(database, tmp_path) -> dict[str, Any]:
    return {
        "database_url": database,
        "sealing": {"key_file": str(tmp_path / "attack.keys")},
        "modules": {"guess": {"clients": True}},
    }


def _burst(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run every call at the same instant from its own thread."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait(timeout=60)
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def _guess_host(settings: dict[str, Any], clock: Callable[[], float], module: GuessModule) -> Host:
    return Host(SecmodSettings(**settings), clock=clock, modules={"guess": module}, entry_points=False)


def _judged_in_audit(host: Host, event: str = "verify") -> Counter:
    return Counter(e.reason for e in host.audit_events(limit=10_000) if e.event == event)


def test_fifty_concurrent_wrong_codes_judge_at_most_the_limit(settings, fake_clock):
    module = GuessModule()
    host = _guess_host(settings, fake_clock, module)
    host.begin_setup(ALICE, "guess")
    results = _burst([lambda i=i: host.verify(ALICE, {"pin": f"{i:04d}"}) for i in range(BURST)])
    assert len(module.judged) == host.settings.throttle.max_code_failures
    assert all(not r.accepted for r in results)
    assert Counter(r.outcome for r in results)[Outcome.LOCKED] >= BURST - host.settings.throttle.max_code_failures
    host.close()


def test_a_right_code_in_a_burst_is_judged_only_within_the_budget(settings, fake_clock):
    """The owner's right code racing a brute-forcer is accepted only if it was among the
    first guesses judged; once the limit has been judged, nothing more is looked at."""
    module = GuessModule()
    host = _guess_host(settings, fake_clock, module)
    host.begin_setup(ALICE, "guess")
    answers = [f"{i:04d}" for i in range(BURST - 1)]
    answers.insert(BURST // 2, module.pin)
    results = _burst([lambda a=a: host.verify(ALICE, {"pin": a}) for a in answers])
    limit = host.settings.throttle.max_code_failures
    if module.pin in module.judged:
        assert module.judged.index(module.pin) < limit
        assert sum(r.accepted for r in results) == 1
    else:
        assert not any(r.accepted for r in results)
        assert len(module.judged) <= limit
    host.close()


def test_sixteen_concurrent_wrong_backup_codes_judge_at_most_three(settings, fake_clock, make_host):
    host = Host(SecmodSettings(**{**settings, "modules": {}}), clock=fake_clock)
    enrol_totp(host, ALICE, fake_clock)
    _burst([lambda i=i: host.recover(ALICE, {"code": f"{i:016x}"}) for i in range(16)])
    judged = _judged_in_audit(host, "recover")
    assert judged["wrong_backup_code"] == host.settings.throttle.max_backup_failures
    host.close()


def test_sixteen_concurrent_right_codes_are_accepted_once(settings, fake_clock):
    host = Host(SecmodSettings(**{**settings, "modules": {}}), clock=fake_clock)
    totp, _ = enrol_totp(host, ALICE, fake_clock)
    code = totp.at(fake_clock.now)
    results = _burst([lambda: host.verify(ALICE, {"code": code}) for _ in range(16)])
    assert sum(r.accepted for r in results) == 1
    host.close()


def _burst_in_process(settings: dict, now: float, method: str, answers: list[str], barrier: Any, results: Any) -> None:
    if method == "verify":
        host = _guess_host(settings, lambda: now, GuessModule())
        calls = [lambda a=a: host.verify(ALICE, {"pin": a}) for a in answers]
    else:
        host = Host(SecmodSettings(**{**settings, "modules": {}}), clock=lambda: now)
        calls = [lambda a=a: host.recover(ALICE, {"code": a}) for a in answers]
    barrier.wait(timeout=60)
    results.put([r.outcome.value for r in _burst(calls)])
    host.close()


def _burst_from_processes(settings: dict, now: float, method: str, answers: list[list[str]]) -> Counter:
    """Each list of answers from its own forked process (its own Host), all at one instant."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(len(answers))
    results = context.Queue()
    workers = [context.Process(target=_burst_in_process, args=(settings, now, method, own, barrier, results))
               for own in answers]
    for worker in workers:
        worker.start()
    outcomes = Counter(o for _ in workers for o in results.get(timeout=120))
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    assert sum(outcomes.values()) == sum(map(len, answers))
    return outcomes


def test_fifty_six_wrong_codes_from_eight_processes_judge_at_most_the_limit(settings, fake_clock):
    host = _guess_host(settings, fake_clock, GuessModule())
    host.begin_setup(ALICE, "guess")
    outcomes = _burst_from_processes(settings, fake_clock.now, "verify",
                                     [[f"{p}{i:03d}" for i in range(7)] for p in range(PROCESSES)])
    assert _judged_in_audit(host)["wrong_pin"] == host.settings.throttle.max_code_failures
    assert outcomes["accepted"] == 0
    host.close()


def test_fifty_six_wrong_backup_codes_from_eight_processes_judge_at_most_the_limit(settings, fake_clock):
    host = Host(SecmodSettings(**{**settings, "modules": {}}), clock=fake_clock)
    enrol_totp(host, ALICE, fake_clock)
    outcomes = _burst_from_processes(settings, fake_clock.now, "recover",
                                     [[f"{p:08x}{i:08x}" for i in range(7)] for p in range(PROCESSES)])
    assert _judged_in_audit(host, "recover")["wrong_backup_code"] == host.settings.throttle.max_backup_failures
    assert outcomes["accepted"] == 0
    host.close()


class CrashingModule(GuessModule):
    """A module with a bug: ``int(answer["pin"])`` on whatever the person typed."""

    from secmod.hookspecs import hookimpl as _hookimpl

    @_hookimpl
    def verify(self, request):
        if int(request.answer["pin"]) == int(request.state["pin"]):
            return Accepted()
        return "yes"  # a wrong return type is a bug too, never an answer

    @_hookimpl
    def recover(self, request):
        return None  # "not one of my methods", which the spec allows


@pytest.mark.parametrize("answer", [{"pin": "x"}, {}, {"pin": "1"}])
def test_a_crashing_module_never_lets_anyone_in(settings, fake_clock, answer):
    settings = {**settings, "modules": {"guess": {"clients": True, "fail_mode": "open"}}}
    host = Host(SecmodSettings(**settings), clock=fake_clock, modules={"guess": CrashingModule()}, entry_points=False)
    host.begin_setup(ALICE, "guess")
    result = host.verify(ALICE, answer)
    assert (result.outcome, result.reason) == (Outcome.REJECTED, "module_error")
    assert result.attempts_left is None  # the person is not to blame
    assert [(e.event, e.reason) for e in host.audit_events(limit=1)] == [("verify", "module_error")]
    assert host.verify(ALICE, {"pin": "4711"}).accepted  # the module still works for a right answer
    host.close()


def test_a_lost_key_file_stops_the_host_instead_of_letting_everyone_in(settings, fake_clock, tmp_path):
    from secmod.host import ConfigError

    host = Host(SecmodSettings(**{**settings, "modules": {}}), clock=fake_clock)
    enrol_totp(host, ALICE, fake_clock)
    host.close()
    (tmp_path / "attack.keys").unlink()
    with pytest.raises(ConfigError, match="sealed with keys"):
        Host(SecmodSettings(**{**settings, "modules": {}}), clock=fake_clock)


def test_a_non_module_plugin_may_only_wrap_hooks(settings, fake_clock):
    from secmod.hookspecs import hookimpl
    from secmod.host import ModuleLoadError

    class Impostor:
        @hookimpl
        def verify(self, request):
            return Accepted()

    with pytest.raises(ModuleLoadError, match="may only wrap"):
        _ = Host(SecmodSettings(**settings), clock=fake_clock, modules={"guess": GuessModule()},
                 plugins=[Impostor()], entry_points=False)


def test_a_module_without_a_challenge_hook_is_refused_at_load(settings, fake_clock):
    from secmod.host import ModuleLoadError

    class NoChallenge(GuessModule):
        challenge = None  # type: ignore[assignment]

    with pytest.raises(ModuleLoadError, match="challenge"):
        _ = Host(SecmodSettings(**settings), clock=fake_clock, modules={"guess": NoChallenge()}, entry_points=False)


def test_the_per_address_throttle_stops_credential_stuffing(settings, fake_clock):
    from secmod.host import RequestContext

    module = GuessModule()
    host = _guess_host(settings, fake_clock, module)
    people = [User(id=f"victim{i}", audience=Audience.CLIENT) for i in range(30)]
    for person in people:
        host.begin_setup(person, "guess")
    attacker = RequestContext(client_ip="203.0.113.9", user_agent="stuffer/1.0")
    results = [host.verify(person, {"pin": "0000"}, context=attacker) for person in people]
    assert len(module.judged) == host.settings.throttle.max_address_failures
    assert results[-1].outcome is Outcome.LOCKED
    other = host.verify(people[-1], {"pin": module.pin}, context=RequestContext(client_ip="198.51.100.1"))
    assert other.accepted  # the victims themselves are not locked out
    row = host.audit_events(limit=1)[0]
    assert (row.client_ip, row.user_agent) == ("198.51.100.1", "")
    host.close()


def test_a_right_answer_gives_the_address_its_reservation_back(settings, fake_clock):
    """The address's budget counts failures, not logins: many people behind one address
    (an office, a carrier's NAT) who log in right never lock it."""
    from secmod.host import RequestContext

    module = GuessModule()
    host = _guess_host(settings, fake_clock, module)
    limit = host.settings.throttle.max_address_failures
    people = [User(id=f"colleague{i}", audience=Audience.CLIENT) for i in range(limit + 3)]
    for person in people:
        host.begin_setup(person, "guess")
    office = RequestContext(client_ip="192.0.2.44")
    for person in people[: limit - 1]:  # one short of locking the address
        assert host.verify(person, {"pin": "0000"}, context=office).outcome is Outcome.REJECTED
    for person in people[limit - 1 : limit + 1]:
        assert host.verify(person, {"pin": module.pin}, context=office).accepted
    # Still one short: the right answers' reservations were given back.
    assert host.verify(people[limit + 1], {"pin": "0000"}, context=office).outcome is Outcome.REJECTED
    assert host.verify(people[limit + 2], {"pin": module.pin}, context=office).reason == "address_locked"
    host.close()


def test_the_module_caller_has_one_method_per_hook_of_the_contract():
    from secmod.hookspecs import specs
    from secmod.host.calls import ModuleCaller

    methods = {name for name in vars(ModuleCaller) if not name.startswith("_")}
    assert set(specs.__all__) == methods


def test_a_crash_when_starting_a_challenge_is_refused_and_audited(settings, fake_clock):
    from secmod.hookspecs import hookimpl
    from secmod.host import ModuleUnavailable

    class BrokenChallenge(GuessModule):
        @hookimpl
        def challenge(self, request):
            return {"message": "a dict, not a Challenge"}

    host = Host(SecmodSettings(**settings), clock=fake_clock, modules={"guess": BrokenChallenge()}, entry_points=False)
    host.begin_setup(ALICE, "guess")
    with pytest.raises(ModuleUnavailable):
        host.begin_challenge(ALICE)
    assert [(e.event, e.reason) for e in host.audit_events(limit=1)] == [("challenge", "module_error")]
    host.close()


def test_a_login_during_re_enrolment_is_never_overwritten(settings, fake_clock):
    """Re-enrolling with the module the person has hands the module their current state
    (a key list, a counter). A login that lands while the module works on it (YubiCloud
    answering, a second tab) changes that state: the enrolment must not write a state
    built from the old one over it. It is refused, "start again", and the login stands."""
    host = Host(SecmodSettings(**settings | {"modules": {}}), clock=fake_clock)
    totp, _ = enrol_totp(host, ALICE, fake_clock)
    started = host.begin_setup(ALICE, "totp")
    new_totp = type(totp)(started.prompt.provisioning.secret)
    login_code = totp.at(fake_clock.now)
    caller = host.calls["totp"]
    judge = caller.setup_user

    def setup_user_while_the_person_logs_in(request):
        step = judge(request)
        assert host.verify(ALICE, {"code": login_code}).accepted  # lands mid-enrolment
        return step

    caller.setup_user = setup_user_while_the_person_logs_in  # type: ignore[method-assign]
    with pytest.raises(SetupExpired, match="changed"):
        host.continue_setup(ALICE, started.setup_id, {"code": new_totp.at(fake_clock.now)})
    caller.setup_user = judge  # type: ignore[method-assign]
    # The login's write stands: its code is used, and the old secret still signs in.
    assert host.verify(ALICE, {"code": login_code}).reason == "already_used"
    fake_clock.advance(30)
    assert host.verify(ALICE, {"code": totp.at(fake_clock.now)}).accepted
    host.close()
