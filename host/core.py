"""The Host: loads modules, applies WHMCS's policies, and decides; the Store remembers.

A host application checks a password, then asks the Host what comes next
(:meth:`Host.login_state`), starts the second factor (:meth:`Host.begin_challenge`) and
hands it the answer (:meth:`Host.verify`). Enrolment is :meth:`Host.begin_setup` then
:meth:`Host.continue_setup`; the way back in without the device is :meth:`Host.recover`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import ValidationError
from secmod.hookspecs import (
    BACKUP_CODE_METHOD,
    ActivateRequest,
    Activation,
    Audience,
    ChallengeRequest,
    DescribeRequest,
    Field,
    ForgetRequest,
    ModuleSettings,
    Prompt,
    RecoverRequest,
    RecoveryMethod,
    Rejected,
    SetupComplete,
    SetupPrompt,
    SetupRequest,
    User,
    Verdict,
    VerifyRequest,
    messages,
)
from secmod.settings import ConfigError, SecmodSettings, describe_validation_error, load_settings
from sqlalchemy.engine import Engine

from . import backup
from .attempts import Attempts
from .calls import ModuleCaller, ModuleFailed
from .context import RequestContext, callback_url
from .errors import ModuleUnavailable, NotEnrolled, SetupExpired, UnknownModule, UserLocked
from .outcomes import (
    ChallengeStarted,
    Enrolled,
    EnrolmentStatus,
    LoginState,
    LoginStep,
    Outcome,
    SetupStarted,
    VerifyResult,
    prompt_from_json,
    prompt_to_json,
    utc,
)
from .qr import with_qr_codes
from .redaction import redact_library_logs
from .registry import LoadedModule, ModuleRegistry, new_plugin_manager
from .sealed import SealedValues
from .sealing import KeyRing, SealError, open_sealed_settings
from .storage import AuditEvent, open_engine
from .store import AuditRow, Store
from .store import Enrolled as StoreEnrolled

__all__ = ["EnrolmentStatus", "Host", "UserLocked"]

log = logging.getLogger("secmod.host")
_NOBODY = RequestContext()
_SETUP_GONE = "This setup step has expired or was already used. Please start again."
_SETUP_RACED = "Your two-factor settings changed while this was being set up. Please start again."
# A challenge token says whether the challenge left pending data, so a verify of a
# module that keeps none (TOTP) spends no statement looking for it.
_WITH_PENDING, _WITHOUT_PENDING = "p", "n"


BACKUP_CODE = RecoveryMethod(
    name=BACKUP_CODE_METHOD,
    label=messages.LOGIN_USING_BACKUP_CODE,
    prompt=Prompt(
        message="Enter one of your backup codes",
        instructions="Each backup code works once; a new one is shown after you log in with it.",
        fields=(Field(name="code", label="Backup code", autocomplete="off", placeholder="xxxx xxxx xxxx xxxx"),),
    ),
)
"""The host's own recovery method: a one-use backup code (answer field ``code``)."""


def _token_id(token: str) -> str:
    # Only a hash of a step's token is stored: a leaked table cannot be replayed.
    return hashlib.sha256(token.encode()).hexdigest()


class Host:
    """secmod's host: load modules, keep state, apply WHMCS's policies.

    :param settings: the loaded :class:`~secmod.settings.SecmodSettings`.
    :param clock: seconds since the epoch; tests pass a fake clock.
    :param modules: module objects to register without an entry point, by name.
    :param plugins: non-module plugins (audit, metrics); they may only wrap hooks.
    :param entry_points: load installed modules from the ``secmod.modules`` group.
    :raises ConfigError: bad settings, or a database holding values sealed with keys
        this key ring does not have (a lost key file: nobody's state would open).
    """

    def __init__(
        self, settings: SecmodSettings, *, clock: Callable[[], float] = time.time,
        modules: Mapping[str, object] | None = None, plugins: Iterable[object] = (),
        entry_points: bool = True, engine: Engine | None = None, keyring: KeyRing | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.keyring = keyring or KeyRing.open(settings.resolve(settings.sealing.key_file))
        self.sealed = SealedValues(self.keyring)
        self.pm = new_plugin_manager()
        self.registry = ModuleRegistry(self.pm)
        for plugin in plugins:
            self.registry.register_wrapper(plugin)
        self.registry.load(
            allow=settings.loading.allow, block=settings.loading.block, entry_points=entry_points, extra=modules,
            required={name for name, table in settings.modules.items() if table.get("clients") or table.get("admins")},
        )
        redact_library_logs(r for module in self.registry.modules.values() for r in module.info.log_redactions)
        self.module_settings: dict[str, ModuleSettings] = {
            name: self._validate_module_settings(module) for name, module in self.registry.modules.items()
        }
        self.calls = {name: ModuleCaller(m, self.module_settings[name]) for name, m in self.registry.modules.items()}
        for name in set(settings.modules) - set(self.registry.modules):
            log.warning("settings have a [modules.%s] table but no such module is loaded", name)
        timeout = settings.database_timeout_seconds
        self.store = Store(engine or open_engine(settings.resolved_database_url, timeout_seconds=timeout))
        self.attempts = Attempts(settings.throttle, self.store, self.sealed)
        self._refuse_unknown_keys()

    @classmethod
    def from_config(cls, path: str | None = None, **kwargs: Any) -> Host:
        """A host from ``secmod.toml`` (``path``, ``$SECMOD_CONFIG`` or ``./secmod.toml``)."""
        return cls(load_settings(path), **kwargs)

    @property
    def engine(self) -> Engine:
        return self.store.engine

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _refuse_unknown_keys(self) -> None:
        unknown = {k for k in self.store.sealed_key_ids() if k} - set(self.keyring.key_ids)
        if unknown:
            self.keyring.reload()  # another host may have rotated the keys
            unknown -= set(self.keyring.key_ids)
        if unknown:
            self.close()
            raise ConfigError(
                f"the database holds values sealed with keys {', '.join(sorted(unknown))} that the key file "
                f"{self.settings.resolve(self.settings.sealing.key_file)} does not have: restore that key file "
                "from its backup (no one's second factor can be checked without it)"
            )

    # -- modules and their settings ------------------------------------------------

    @property
    def modules(self) -> Mapping[str, LoadedModule]:
        return self.registry.modules

    def _validate_module_settings(self, module: LoadedModule) -> ModuleSettings:
        where = str(self.settings.config_file or "settings")
        try:
            raw = open_sealed_settings(self.keyring, module.name, self.settings.modules.get(module.name, {}))
        except SealError as error:
            raise ConfigError(f"{where}: [modules.{module.name}] {error}") from None
        try:
            return module.info.settings_model.model_validate(raw, context=self.settings.module_settings_context)
        except ValidationError as error:
            raise ConfigError(describe_validation_error(error, where=where, prefix=f"[modules.{module.name}] ")) from None

    def module(self, name: str) -> LoadedModule:
        try:
            return self.registry.modules[name]
        except KeyError:
            raise UnknownModule(f"module {name!r} is not loaded") from None

    def callback_url(self, module: str) -> str:
        """Where a redirecting module sends the browser back: ``{[web] base_url}/login/{module}/callback``."""
        return callback_url(self.settings.web.base_url, module)

    def enabled_modules(self, audience: Audience) -> tuple[str, ...]:
        """Names of the modules enabled for ``audience``, in a stable order."""
        return tuple(sorted(n for n, s in self.module_settings.items() if s.enabled_for(audience)))

    def activate(self, name: str) -> Activation:
        """Run the module's ``activate`` check. :raises ModuleUnavailable: it fails."""
        module = self.module(name)
        try:
            return self.calls[name].activate(ActivateRequest(settings=self.module_settings[name], now=self.clock()))
        except ModuleFailed as failure:
            raise ModuleUnavailable(f"{module.info.friendly_name}: {failure.message}") from None

    def enrolment_counts(self) -> dict[str, int]:
        return self.store.enrolment_counts()

    # -- policies ------------------------------------------------------------------

    def login_state(self, user: User) -> LoginState:
        """What must happen after the password: nothing, set up, or a challenge.

        A person enrolled with a module is challenged with it even when the module has
        since been switched off for their audience (WHMCS silently drops 2FA there; we
        do not): switching off only stops new enrolments.
        """
        client = user.audience is Audience.CLIENT
        stored = self.store.load(user)
        if stored is not None:
            message = messages.SECOND_FACTOR_REQUIRED_CLIENT if client else messages.SECOND_FACTOR_REQUIRED_ADMIN
            return LoginState(step=LoginStep.CHALLENGE, module=stored.module, message=message)
        forced = self.settings.force_clients if client else self.settings.force_admins
        choices = self.enabled_modules(user.audience)
        if forced and choices:
            return LoginState(step=LoginStep.MUST_SET_UP, choices=choices,
                              message=messages.FORCED_CLIENT if client else messages.FORCED_ADMIN)
        return LoginState(step=LoginStep.NOT_REQUIRED, choices=choices)

    def status(self, user: User) -> EnrolmentStatus | None:
        stored = self.store.load(user)
        if stored is None:
            return None
        locks = self.store.lockouts(user, self.clock())
        return EnrolmentStatus(
            module=stored.module, enrolled_at=utc(stored.created_at),
            backup_codes_left=self.store.backup_codes_left(user),
            locked_until=utc(locks["code"]) if "code" in locks else None,
            backup_locked_until=utc(locks["backup"]) if "backup" in locks else None,
        )

    def describe(self, user: User) -> tuple[str, ...]:
        """What the person's module says about their enrolment, for an operator
        (``secmod status``): plain lines, never a secret; empty when it has nothing to say."""
        stored = self.store.load(user)
        caller = self.calls.get(stored.module) if stored is not None else None
        if stored is None or caller is None:
            return ()
        state = self.sealed.open_state(user, stored.module, stored.state)
        if state is None:
            return ()
        return caller.describe_user(DescribeRequest(settings=caller.settings, user=user, now=self.clock(), state=state))

    # -- enrolment -----------------------------------------------------------------

    def begin_setup(self, user: User, module_name: str) -> SetupStarted | Enrolled:
        """Start enrolling ``user`` with a module enabled for their audience.

        Enrolling again with the module the person already has hands the module their
        current state (a YubiKey user adding a second key); on success that state is
        replaced in place and the backup codes are kept. Switching to another module
        replaces the enrolment and issues new backup codes, as WHMCS does.
        """
        module = self.module(module_name)
        settings = self.module_settings[module.name]
        if not settings.enabled_for(user.audience):
            raise UnknownModule(f"module {module.name!r} is not enabled for {user.audience.value}s")
        now = self.clock()
        state, version = self._current_state(user, module.name)
        request = SetupRequest(settings=settings, user=user, now=now, issuer=self.settings.issuer, state=state)
        try:
            step = _with_qr_codes(self.calls[module.name].setup_user(request))
        except ModuleFailed as failure:
            self._audit(AuditRow.about(user, now, module=module.name, event="enrol", outcome="fail",
                                 reason=failure.reason))
            raise ModuleUnavailable(self._setup_failed(user) if failure.crashed else failure.message) from None
        if isinstance(step, SetupComplete):
            return self._enrol(user, module.name, step, setup_token=None, built_on=version, now=now)
        token = secrets.token_urlsafe(32)
        data = self.sealed.seal_pending("setup", user, module.name, {"pending": dict(step.pending), "prompt": prompt_to_json(step.prompt)})
        self.store.add_pending(_token_id(token), "setup", user, module.name, data, now + self.settings.setup_ttl_seconds, now)
        return SetupStarted(setup_id=token, module=module.name, prompt=step.prompt)

    def continue_setup(self, user: User, setup_id: str, answer: Mapping[str, str]) -> SetupStarted | Enrolled:
        """Hand the person's answer to the module; finish enrolment when it is right.

        A wrong answer returns the same step with ``error`` set (WHMCS's ``verifyError``);
        nothing about the person changes until the module says the device works.
        """
        now = self.clock()
        row = self.store.find_pending(_token_id(setup_id), "setup", user, now)
        if row is None:
            raise SetupExpired(_SETUP_GONE)
        module = self.module(row.module)
        saved = self.sealed.open_pending(row, user)
        state, version = self._current_state(user, module.name)
        request = SetupRequest(
            settings=self.module_settings[module.name], user=user, now=now, issuer=self.settings.issuer,
            answer=_strings(answer), pending=saved["pending"], state=state,
        )
        try:
            step = _with_qr_codes(self.calls[module.name].setup_user(request))
        except ModuleFailed as failure:
            self._audit(AuditRow.about(user, now, module=module.name, event="enrol", outcome="fail",
                                 reason=failure.reason))
            if failure.crashed:
                raise ModuleUnavailable(self._setup_failed(user)) from None
            return SetupStarted(setup_id=setup_id, module=module.name, prompt=prompt_from_json(saved["prompt"]),
                                error=failure.message, detail=failure.detail)
        if isinstance(step, SetupComplete):
            return self._enrol(user, module.name, step, setup_token=setup_id, built_on=version, now=now)
        data = self.sealed.seal_pending("setup", user, module.name, {"pending": dict(step.pending), "prompt": prompt_to_json(step.prompt)})
        self.store.update_pending(_token_id(setup_id), data)
        return SetupStarted(setup_id=setup_id, module=module.name, prompt=step.prompt)

    @staticmethod
    def _setup_failed(user: User) -> str:
        return messages.ACTIVATION_FAILED_CLIENT if user.audience is Audience.CLIENT else messages.ACTIVATION_FAILED_ADMIN

    def _current_state(self, user: User, module: str) -> tuple[dict[str, Any] | None, int | None]:
        """The person's state in ``module``, and its version, to hand the module when they
        enrol with it again; ``(None, None)`` when they have another module or none."""
        stored = self.store.load(user)
        if stored is None or stored.module != module:
            return None, None
        state = self.sealed.open_state(user, stored.module, stored.state)
        return (state, stored.version) if state is not None else (None, None)

    def _enrol(self, user: User, module: str, step: SetupComplete, *, setup_token: str | None, built_on: int | None,
               now: float) -> Enrolled:
        codes = [backup.new_code() for _ in range(self.settings.backup_codes.count)]
        stored = self.store.enrol(
            user, module, self.sealed.seal_state(user, module, step.state), [backup.hash_code(c) for c in codes], now,
            setup_token_id=_token_id(setup_token) if setup_token is not None else None, built_on=built_on,
            audit=AuditRow.about(user, now, module=module, event="enrol", outcome="ok"),
        )
        if stored is StoreEnrolled.STEP_GONE:
            raise SetupExpired(_SETUP_GONE)
        if stored is StoreEnrolled.STATE_CHANGED:
            raise SetupExpired(_SETUP_RACED)
        shown = tuple(map(backup.format_code, codes)) if stored is StoreEnrolled.NEW else ()
        return Enrolled(module=module, backup_codes=shown, message=step.message)

    def disable(self, user: User, *, actor: str = "self") -> bool:
        """Remove the person's 2FA (their choice with their password, or an admin's).

        :param actor: who did it, for the audit log (``self`` or ``admin:<id>``).
        :returns: whether anything was enrolled.
        """
        now = self.clock()
        reason = "self" if actor == "self" else "by_admin"
        stored = self.store.disable(user, AuditRow.about(user, now, module="", event="disable", outcome="ok",
                                                   reason=reason, actor=actor))
        if stored is None:
            return False
        caller = self.calls.get(stored.module)
        if caller is not None:
            state = self.sealed.open_state(user, stored.module, stored.state) or {}
            request = ForgetRequest(settings=caller.settings, user=user, now=now, state=state)
            caller.forget_user(request, lambda failure: self._audit(AuditRow.about(
                user, now, module=stored.module, event="forget_user", outcome="fail", reason=failure.reason,
                detail=failure.error_type)))
        return True

    # -- login ---------------------------------------------------------------------

    def begin_challenge(self, user: User, *, context: RequestContext | None = None) -> ChallengeStarted | VerifyResult:
        """Start the second factor for an enrolled person.

        :returns: the challenge to show; or, when the module's provider is down and the
            operator set its ``fail_mode = "open"``, an accepted :class:`VerifyResult`
            (reason ``fail_open``, audited): the second factor is settled already.
        :raises NotEnrolled: nothing to challenge.
        :raises UserLocked: too many wrong codes; says until when (backup codes still work).
        :raises ModuleUnavailable: the module cannot start (message is user-facing);
            the backup code still works.
        """
        now, context = self.clock(), context or _NOBODY
        stored = self.store.load(user)
        if stored is None:
            raise NotEnrolled(messages.NOT_ENABLED)
        if stored.locked_until and stored.locked_until > now:
            raise UserLocked(utc(stored.locked_until))
        audit = AuditRow.about(user, now, context, module=stored.module, event="challenge", outcome="fail")
        caller = self.calls.get(stored.module)
        state = self.sealed.open_state(user, stored.module, stored.state) if caller is not None else None
        if caller is None or state is None:
            self._audit(audit.but(reason="module_unavailable" if caller is None else "state_unreadable"))
            raise ModuleUnavailable(messages.MODULE_LOAD_ERROR)
        try:
            challenge = caller.challenge(ChallengeRequest(
                settings=caller.settings, user=user, now=now, issuer=self.settings.issuer, state=state,
                callback_url=self.callback_url(stored.module)))
        except ModuleFailed as failure:
            if failure.outage and caller.settings.fail_mode == "open":
                self._audit(audit.but(outcome="ok", reason="fail_open"))
                return VerifyResult(outcome=Outcome.ACCEPTED, module=stored.module, reason="fail_open")
            self._audit(audit.but(reason=failure.reason))
            raise ModuleUnavailable(failure.message) from None
        ttl = min(challenge.expires_in, self.settings.challenge_ttl_seconds)
        if challenge.pending is None:
            token = _WITHOUT_PENDING + secrets.token_urlsafe(32)
        else:
            token = _WITH_PENDING + secrets.token_urlsafe(32)
            data = self.sealed.seal_pending("challenge", user, stored.module, dict(challenge.pending))
            self.store.add_pending(_token_id(token), "challenge", user, stored.module, data, now + ttl, now)
        return ChallengeStarted(challenge_id=token, module=stored.module, prompt=challenge.prompt, expires_at=utc(now + ttl))

    def verify(self, user: User, answer: Mapping[str, str], *, challenge_id: str | None = None,
               context: RequestContext | None = None) -> VerifyResult:
        """Judge the person's answer to their challenge.

        The attempt is reserved on the person's budget (WHMCS: 5 wrong answers lock for
        15 minutes) and on the client address's before the module sees it, so no burst
        gets more answers judged than the budget; accepted state is written back with a
        compare-and-set, so one code is accepted once, even when processes race.
        """
        now, context = self.clock(), context or _NOBODY
        attempt = self.store.begin_attempt(user, self.attempts.budgets(user, "code", context), now)
        refused = self.attempts.refused(attempt, now, context, "verify")
        if refused is not None:
            return refused
        stored = attempt.enrolment
        assert stored is not None
        pending = None
        if challenge_id and challenge_id.startswith(_WITH_PENDING):
            row = self.store.take_pending(_token_id(challenge_id), user, stored.module, now)
            pending = self.sealed.open_pending(row, user) if row is not None else None
        caller = self.calls.get(stored.module)
        state = self.sealed.open_state(user, stored.module, stored.state) if caller is not None else None
        if caller is None or state is None:
            verdict: Verdict = self.attempts.unjudged(caller, state)
        else:
            verdict = caller.verify(VerifyRequest(
                settings=caller.settings, user=user, now=now, issuer=self.settings.issuer, answer=_strings(answer),
                state=state, pending=pending))
        result = self.attempts.settle(attempt, verdict, now, context, "verify")
        if result.outcome is Outcome.REJECTED and challenge_id and challenge_id.startswith(_WITHOUT_PENDING):
            # Nothing of the challenge was spent (TOTP): the same prompt may be answered again.
            return dataclasses.replace(result, challenge_open=True)
        return result

    def recovery_methods(self, user: User) -> tuple[RecoveryMethod, ...]:
        """The ways back in ``user`` has, each with the prompt to show: the host's backup
        code first, then the methods their module declares. Empty when not enrolled.

        A host application renders a method's ``prompt`` and passes what was typed,
        keyed by its field names, to :meth:`recover` with ``method=method.name``.
        """
        stored = self.store.load(user)
        if stored is None:
            return ()
        caller = self.calls.get(stored.module)
        return (BACKUP_CODE, *(caller.module.info.recovery_methods if caller is not None else ()))

    def recover(self, user: User, answer: Mapping[str, str], *, method: str = BACKUP_CODE_METHOD,
                context: RequestContext | None = None) -> VerifyResult:
        """The way in without the device.

        ``backup_code`` (answer field ``code``): a one-use code logs the person in,
        keeps 2FA on and issues a replacement, shown once (WHMCS). Backup codes have
        their own budget (3 wrong lock them for 15 minutes), so a person locked out by
        wrong codes can still use one. Other methods are the module's (TOTP ``resync``)
        and count as codes.
        """
        now, context = self.clock(), context or _NOBODY
        stored = self.store.load(user)
        if stored is None:
            return VerifyResult(outcome=Outcome.REJECTED, reason="not_enrolled", message=messages.NOT_ENABLED)
        caller = self.calls.get(stored.module)
        if method != BACKUP_CODE_METHOD and (caller is None or caller.module.info.recovery_method(method) is None):
            raise UnknownModule(f"recovery method {method!r} is not offered by module {stored.module!r}")
        kind = "backup" if method == "backup_code" else "code"
        attempt = self.store.begin_attempt(user, self.attempts.budgets(user, kind, context), now)
        refused = self.attempts.refused(attempt, now, context, "recover")
        if refused is not None:
            return refused
        stored = attempt.enrolment
        assert stored is not None
        if method == "backup_code":
            return self.attempts.settle_backup_code(attempt, str(answer.get("code", "")), now, context)
        state = self.sealed.open_state(user, stored.module, stored.state) if caller is not None else None
        if caller is None or state is None:
            verdict: Verdict | None = self.attempts.unjudged(caller, state)
        else:
            verdict = caller.recover(RecoverRequest(
                settings=caller.settings, user=user, now=now, issuer=self.settings.issuer, method=method,
                answer=_strings(answer), state=state))
        return self.attempts.settle(attempt, verdict or Rejected(reason="unknown_method", counts=False), now, context, "recover")

    def reseal_all(self) -> int:
        """Re-seal every stored value under the key ring's primary key (``secmod keys rotate``)."""
        return self.sealed.reseal_all(self.store)

    # -- audit ---------------------------------------------------------------------

    def _audit(self, *rows: AuditRow) -> None:
        self.store.audit(*rows)

    def record_event(self, event: str, *, actor: str, outcome: str = "info", reason: str = "", detail: str = "",
                     module: str = "", subject: User | None = None, context: RequestContext | None = None) -> None:
        """Audit something that is not a person's login: an admin activating a module,
        changing the force settings or a module's settings, resetting a password.

        :param actor: who did it (``admin:<id>``, ``cli``).
        :param subject: the person it was about, if any; otherwise the row's audience
            is ``system``.
        :param detail: plain words for the audit page; never a secret.
        """
        self._audit(AuditRow.about(subject, self.clock(), context, module=module, event=event, outcome=outcome,
                                   reason=reason, actor=actor, detail=detail))

    def audit_events(self, *, user: User | None = None, limit: int = 100) -> list[AuditEvent]:
        """The newest audit events first."""
        return self.store.audit_events(user=user, limit=limit)


def _strings(answer: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in answer.items()}


def _with_qr_codes(step: SetupPrompt | SetupComplete) -> SetupPrompt | SetupComplete:
    # Modules give the otpauth URI; the host draws its QR codes (secmod.host.qr).
    if isinstance(step, SetupPrompt):
        return dataclasses.replace(step, prompt=with_qr_codes(step.prompt))
    return step
