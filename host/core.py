"""The Host: the one owner of the plugin manager, the store, the keys and the policies.

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
import traceback
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Connection, Engine

from secmod.hookspecs import (
    Accepted,
    Activation,
    ActivateRequest,
    Audience,
    BrowserCeremony,
    ChallengeRequest,
    Field,
    ForgetRequest,
    ModuleError,
    ModuleSettings,
    Prompt,
    Provisioning,
    RecoverRequest,
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

from . import backup
from .errors import ModuleUnavailable, NotEnrolled, SetupExpired, UnknownModule
from .outcomes import ChallengeStarted, Enrolled, LoginState, LoginStep, Outcome, SetupStarted, VerifyResult
from .registry import LoadedModule, ModuleRegistry, new_plugin_manager
from .sealing import SEALED_PREFIX, KeyRing, SealError
from .storage import AuditEvent, BackupCode, Enrolment, PendingStep, Throttle, open_engine

__all__ = ["Host", "UserLocked"]

log = logging.getLogger("secmod.host")

_enrolment = Enrolment.__table__
_pending = PendingStep.__table__
_backup = BackupCode.__table__
_throttle = Throttle.__table__
_audit = AuditEvent.__table__

# The statements of the verify path are built once: building and hashing a SQLAlchemy
# statement costs more than running it on SQLite (see bench/verify.py).
_LOAD = (
    sa.select(
        _enrolment.c.id, _enrolment.c.module, _enrolment.c.state, _enrolment.c.version,
        sa.func.coalesce(_throttle.c.code_failures, 0), sa.func.coalesce(_throttle.c.backup_failures, 0),
        _throttle.c.locked_until,
    )
    .select_from(
        _enrolment.outerjoin(
            _throttle, sa.and_(_throttle.c.audience == _enrolment.c.audience, _throttle.c.user_id == _enrolment.c.user_id)
        )
    )
    .where(_enrolment.c.audience == sa.bindparam("p_audience"), _enrolment.c.user_id == sa.bindparam("p_user_id"))
)
_COMPARE_AND_SET = (
    _enrolment.update()
    .where(_enrolment.c.id == sa.bindparam("p_id"), _enrolment.c.version == sa.bindparam("p_version"))
    .values(state=sa.bindparam("p_state"), version=sa.bindparam("p_new_version"), updated_at=sa.bindparam("p_now"))
)
_AUDIT = _audit.insert()


class UserLocked(ModuleUnavailable):
    """Too many failures: nothing is checked until ``until`` (UTC)."""

    def __init__(self, until: datetime) -> None:
        super().__init__(messages.LOCKED.format(until=until.strftime("%Y-%m-%d %H:%M:%S UTC")))
        self.until = until


@dataclasses.dataclass(frozen=True, slots=True)
class _Stored:
    """One person's enrolment row with their throttle counters."""

    id: int
    module: str
    state: str = dataclasses.field(repr=False)
    version: int
    code_failures: int
    backup_failures: int
    locked_until: float | None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class EnrolmentStatus:
    """What ``secmod status`` and the security page show about a person."""

    module: str
    enrolled_at: datetime
    backup_codes_left: int
    locked_until: datetime | None


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def _frames(error: BaseException) -> str:
    """Where an exception happened, without its message (which may quote a secret)."""
    return "".join(traceback.format_tb(error.__traceback__))


def _token_id(token: str) -> str:
    # The database keeps only a hash of a step's token: a read-only leak of the
    # table cannot be replayed as someone's pending challenge.
    return hashlib.sha256(token.encode()).hexdigest()


def _prompt_to_json(prompt: Prompt) -> dict[str, Any]:
    return dataclasses.asdict(prompt)


def _prompt_from_json(data: Mapping[str, Any]) -> Prompt:
    provisioning = data.get("provisioning")
    return Prompt(
        message=data["message"],
        instructions=data.get("instructions", ""),
        fields=tuple(Field(**item) for item in data.get("fields", ())),
        redirect_url=data.get("redirect_url"),
        provisioning=Provisioning(**provisioning) if provisioning else None,
        ceremony=BrowserCeremony(**ceremony) if (ceremony := data.get("ceremony")) else None,
    )


class Host:
    """secmod's host: load modules, keep state, apply WHMCS's policies.

    :param settings: the loaded :class:`~secmod.settings.SecmodSettings`.
    :param clock: seconds since the epoch; tests pass a fake clock.
    :param modules: module objects to register without an entry point, by name.
    :param plugins: non-module plugins (audit, metrics) that may wrap every hook.
    :param entry_points: load installed modules from the ``secmod.modules`` group.
    """

    def __init__(
        self,
        settings: SecmodSettings,
        *,
        clock: Callable[[], float] = time.time,
        modules: Mapping[str, object] | None = None,
        plugins: Iterable[object] = (),
        entry_points: bool = True,
        engine: Engine | None = None,
        keyring: KeyRing | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.keyring = keyring or KeyRing.open(settings.resolve(settings.sealing.key_file))
        self.pm = new_plugin_manager()
        for plugin in plugins:
            self.pm.register(plugin)
        self.registry = ModuleRegistry(self.pm)
        self.registry.load(
            allow=settings.loading.allow,
            block=settings.loading.block,
            required={name for name, table in settings.modules.items() if table.get("clients") or table.get("admins")},
            entry_points=entry_points,
            extra=modules,
        )
        self.module_settings: dict[str, ModuleSettings] = {
            name: self._validate_module_settings(module) for name, module in self.registry.modules.items()
        }
        for name in set(settings.modules) - set(self.registry.modules):
            log.warning("settings have a [modules.%s] table but no such module is loaded", name)
        self.engine = engine or open_engine(settings.resolved_database_url)

    @classmethod
    def from_config(cls, path: str | None = None, **kwargs: Any) -> Host:
        """A host from ``secmod.toml`` (``path``, ``$SECMOD_CONFIG`` or ``./secmod.toml``)."""
        return cls(load_settings(path), **kwargs)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- modules and their settings ------------------------------------------------

    @property
    def modules(self) -> Mapping[str, LoadedModule]:
        return self.registry.modules

    def _validate_module_settings(self, module: LoadedModule) -> ModuleSettings:
        raw = dict(self.settings.modules.get(module.name, {}))
        where = str(self.settings.config_file or "settings")
        for key, value in raw.items():
            if isinstance(value, str) and value.startswith(SEALED_PREFIX):
                try:
                    raw[key] = self.keyring.unseal_setting(module.name, key, value)
                except SealError as error:
                    raise ConfigError(f"{where}: [modules.{module.name}] {key}: {error}") from None
        try:
            return module.info.settings_model.model_validate(raw, context=self.settings.module_settings_context)
        except ValidationError as error:
            raise ConfigError(
                describe_validation_error(error, where=where, prefix=f"[modules.{module.name}] ")
            ) from None

    def module(self, name: str) -> LoadedModule:
        try:
            return self.registry.modules[name]
        except KeyError:
            raise UnknownModule(f"module {name!r} is not loaded") from None

    def enabled_modules(self, audience: Audience) -> tuple[str, ...]:
        """Names of the modules enabled for ``audience``, in a stable order."""
        return tuple(sorted(n for n, s in self.module_settings.items() if s.enabled_for(audience)))

    def activate(self, name: str) -> Activation:
        """Run the module's ``activate`` check. :raises ModuleUnavailable: it fails."""
        module = self.module(name)
        request = ActivateRequest(settings=self.module_settings[name], now=self.clock())
        try:
            result = module.hooks.activate(request=request)
        except ModuleError as error:
            raise ModuleUnavailable(f"{module.info.friendly_name}: {error.message}") from None
        except Exception as error:
            log.error("module %r: activate raised %s", name, type(error).__name__)
            log.debug("module %r failed at:\n%s", name, _frames(error))
            raise ModuleUnavailable(f"{module.info.friendly_name}: {messages.MODULE_LOAD_ERROR}") from None
        return result or Activation(message="no check needed")

    def enrolment_counts(self) -> dict[str, int]:
        query = sa.select(_enrolment.c.module, sa.func.count()).group_by(_enrolment.c.module)
        with self.engine.connect() as conn:
            return {module: count for module, count in conn.execute(query)}

    # -- policies ------------------------------------------------------------------

    def login_state(self, user: User) -> LoginState:
        """What must happen after the password: nothing, set up, or a challenge.

        A person enrolled with a module is challenged with it even when the module has
        since been switched off for their audience (WHMCS silently drops 2FA there; we
        do not): switching off only stops new enrolments.
        """
        stored = self._load(user)
        if stored is not None:
            message = (
                messages.SECOND_FACTOR_REQUIRED_CLIENT
                if user.audience is Audience.CLIENT
                else messages.SECOND_FACTOR_REQUIRED_ADMIN
            )
            return LoginState(step=LoginStep.CHALLENGE, module=stored.module, message=message)
        forced = self.settings.force_clients if user.audience is Audience.CLIENT else self.settings.force_admins
        choices = self.enabled_modules(user.audience)
        if forced and choices:
            message = messages.FORCED_CLIENT if user.audience is Audience.CLIENT else messages.FORCED_ADMIN
            return LoginState(step=LoginStep.MUST_SET_UP, choices=choices, message=message)
        return LoginState(step=LoginStep.NOT_REQUIRED, choices=choices)

    def status(self, user: User) -> EnrolmentStatus | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(_enrolment.c.module, _enrolment.c.created_at).where(*self._who(_enrolment, user))
            ).first()
            if row is None:
                return None
            left = conn.execute(
                sa.select(sa.func.count()).where(*self._who(_backup, user), _backup.c.used_at.is_(None))
            ).scalar_one()
            locked = conn.execute(sa.select(_throttle.c.locked_until).where(*self._who(_throttle, user))).scalar()
        locked_until = _utc(locked) if locked and locked > self.clock() else None
        return EnrolmentStatus(
            module=row.module, enrolled_at=_utc(row.created_at), backup_codes_left=left, locked_until=locked_until
        )

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
        request = SetupRequest(settings=settings, user=user, now=now, state=self._current_state(user, module.name))
        step = self._call_setup(module, user, request)
        if isinstance(step, SetupComplete):
            return self._enrol(user, module.name, step, setup_token=None, now=now)
        token = secrets.token_urlsafe(32)
        data = self._seal_pending("setup", user, module.name, {"pending": dict(step.pending), "prompt": _prompt_to_json(step.prompt)})
        with self.engine.begin() as conn:
            self._purge_expired(conn, now)
            conn.execute(
                _pending.insert().values(
                    id=_token_id(token), kind="setup", audience=user.audience.value, user_id=user.id,
                    module=module.name, data=data, expires_at=now + self.settings.setup_ttl_seconds,
                )
            )
        return SetupStarted(setup_id=token, module=module.name, prompt=step.prompt)

    def continue_setup(self, user: User, setup_id: str, answer: Mapping[str, str]) -> SetupStarted | Enrolled:
        """Hand the person's answer to the module; finish enrolment when it is right.

        A wrong answer returns the same step with ``error`` set (WHMCS's ``verifyError``);
        nothing about the person changes until the module says the device works.
        """
        now = self.clock()
        row = self._find_pending(setup_id, "setup", user, now)
        if row is None:
            raise SetupExpired("This setup step has expired or was already used. Please start again.")
        module = self.module(row.module)
        saved = self._unseal_pending(row, user)
        prompt = _prompt_from_json(saved["prompt"])
        request = SetupRequest(
            settings=self.module_settings[module.name], user=user, now=now,
            answer={k: str(v) for k, v in answer.items()}, pending=saved["pending"],
            state=self._current_state(user, module.name),
        )
        try:
            step = self._call_setup(module, user, request, reraise_module_error=True)
        except ModuleError as error:
            self._audit_now(user, module.name, "enrol", "fail", error.reason)
            return SetupStarted(setup_id=setup_id, module=module.name, prompt=prompt, error=error.message, detail=error.detail)
        if isinstance(step, SetupComplete):
            return self._enrol(user, module.name, step, setup_token=setup_id, now=now)
        data = self._seal_pending("setup", user, module.name, {"pending": dict(step.pending), "prompt": _prompt_to_json(step.prompt)})
        with self.engine.begin() as conn:
            conn.execute(_pending.update().where(_pending.c.id == _token_id(setup_id)).values(data=data))
        return SetupStarted(setup_id=setup_id, module=module.name, prompt=step.prompt)

    def _current_state(self, user: User, module: str) -> dict[str, Any] | None:
        stored = self._load(user)
        return self._open_state(user, stored) if stored is not None and stored.module == module else None

    def _call_setup(
        self, module: LoadedModule, user: User, request: SetupRequest, *, reraise_module_error: bool = False
    ) -> SetupPrompt | SetupComplete:
        failed = messages.ACTIVATION_FAILED_CLIENT if user.audience is Audience.CLIENT else messages.ACTIVATION_FAILED_ADMIN
        try:
            step = module.hooks.setup_user(request=request)
        except ModuleError as error:
            if reraise_module_error:
                raise
            self._audit_now(user, module.name, "enrol", "fail", error.reason)
            raise ModuleUnavailable(error.message) from None
        except Exception as error:
            self._module_crashed(user, module.name, "setup_user", error)
            raise ModuleUnavailable(failed) from None
        if not isinstance(step, SetupPrompt | SetupComplete):
            self._module_crashed(user, module.name, "setup_user", TypeError(type(step).__name__))
            raise ModuleUnavailable(failed)
        return step

    def _enrol(
        self, user: User, module: str, step: SetupComplete, *, setup_token: str | None, now: float
    ) -> Enrolled:
        # One transaction: the old enrolment, its backup codes and the pending step are
        # replaced together, so a crash leaves either the old 2FA or the new one, never none.
        state = self._seal_state(user, module, step.state)
        codes = [backup.new_code() for _ in range(self.settings.backup_codes.count)]
        hashes = [backup.hash_code(code) for code in codes]
        with self.engine.begin() as conn:
            if setup_token is not None:
                taken = conn.execute(
                    _pending.delete().where(_pending.c.id == _token_id(setup_token), _pending.c.kind == "setup")
                ).rowcount
                if taken != 1:
                    raise SetupExpired("This setup step has expired or was already used. Please start again.")
            previous = conn.execute(sa.select(_enrolment.c.module).where(*self._who(_enrolment, user))).scalar()
            if previous == module:
                conn.execute(
                    _enrolment.update().where(*self._who(_enrolment, user))
                    .values(state=state, version=_enrolment.c.version + 1, updated_at=now)
                )
                self._audit(conn, user, module, "enrol", "ok", "updated", now=now)
                return Enrolled(module=module, backup_codes=(), message=step.message)
            conn.execute(_enrolment.delete().where(*self._who(_enrolment, user)))
            conn.execute(
                _enrolment.insert().values(
                    audience=user.audience.value, user_id=user.id, module=module, state=state,
                    version=1, created_at=now, updated_at=now,
                )
            )
            self._replace_backup_codes(conn, user, hashes, now)
            conn.execute(_throttle.delete().where(*self._who(_throttle, user)))
            conn.execute(_throttle.insert().values(audience=user.audience.value, user_id=user.id))
            self._audit(conn, user, module, "enrol", "ok", "replaced:" + previous if previous else "ok", now=now)
        return Enrolled(module=module, backup_codes=tuple(map(backup.format_code, codes)), message=step.message)

    def _replace_backup_codes(self, conn: Connection, user: User, hashes: list[str], now: float) -> None:
        conn.execute(_backup.delete().where(*self._who(_backup, user)))
        if hashes:
            conn.execute(
                _backup.insert(),
                [{"audience": user.audience.value, "user_id": user.id, "code_hash": h, "created_at": now} for h in hashes],
            )

    def disable(self, user: User, *, actor: str = "self") -> bool:
        """Remove the person's 2FA (their choice with their password, or an admin's).

        :param actor: who did it, for the audit log (``self`` or ``admin:<id>``).
        :returns: whether anything was enrolled.
        """
        now = self.clock()
        with self.engine.begin() as conn:
            stored = self._load(user, conn)
            if stored is None:
                return False
            for table in (_enrolment, _backup, _throttle):
                conn.execute(table.delete().where(*self._who(table, user)))
            conn.execute(_pending.delete().where(*self._who(_pending, user)))
            self._audit(conn, user, stored.module, "disable", "ok", "by_admin" if actor != "self" else "self", actor=actor, now=now)
        module = self.registry.modules.get(stored.module)
        if module is not None:
            try:
                state = self._open_state(user, stored) or {}
                module.hooks.forget_user(
                    request=ForgetRequest(settings=self.module_settings[module.name], user=user, now=now, state=state)
                )
            except Exception as error:  # the removal stands whatever the module says
                self._module_crashed(user, module.name, "forget_user", error)
        return True

    # -- login ---------------------------------------------------------------------

    def begin_challenge(self, user: User) -> ChallengeStarted:
        """Start the second factor for an enrolled person.

        :raises NotEnrolled: nothing to challenge.
        :raises UserLocked: too many failures; says until when.
        :raises ModuleUnavailable: the module cannot start (message is user-facing);
            the backup code still works.
        """
        now = self.clock()
        stored = self._load(user)
        if stored is None:
            raise NotEnrolled(messages.NOT_ENABLED)
        if stored.locked_until and stored.locked_until > now:
            raise UserLocked(_utc(stored.locked_until))
        module = self.registry.modules.get(stored.module)
        if module is None:
            self._audit_now(user, stored.module, "challenge", "fail", "module_missing")
            raise ModuleUnavailable(messages.MODULE_LOAD_ERROR)
        state = self._open_state(user, stored)
        if state is None:
            raise ModuleUnavailable(messages.MODULE_LOAD_ERROR)
        request = ChallengeRequest(settings=self.module_settings[module.name], user=user, now=now, state=state)
        try:
            challenge = module.hooks.challenge(request=request)
        except ModuleError as error:
            self._audit_now(user, module.name, "challenge", "fail", error.reason)
            raise ModuleUnavailable(error.message) from None
        except Exception as error:
            self._module_crashed(user, module.name, "challenge", error)
            raise ModuleUnavailable(messages.MODULE_LOAD_ERROR) from None
        ttl = min(challenge.expires_in, self.settings.challenge_ttl_seconds)
        token = secrets.token_urlsafe(32)
        if challenge.pending is not None:
            data = self._seal_pending("challenge", user, module.name, dict(challenge.pending))
            with self.engine.begin() as conn:
                self._purge_expired(conn, now)
                conn.execute(
                    _pending.insert().values(
                        id=_token_id(token), kind="challenge", audience=user.audience.value, user_id=user.id,
                        module=module.name, data=data, expires_at=now + ttl,
                    )
                )
        return ChallengeStarted(challenge_id=token, module=module.name, prompt=challenge.prompt, expires_at=_utc(now + ttl))

    def verify(self, user: User, answer: Mapping[str, str], *, challenge_id: str | None = None) -> VerifyResult:
        """Judge the person's answer to their challenge.

        Throttled (WHMCS: 5 wrong answers lock for 15 minutes), audited, and written
        back with a compare-and-set so one code is never accepted twice, even when two
        processes race with it.
        """
        now = self.clock()
        stored = self._load(user)
        if stored is None:
            return VerifyResult(outcome=Outcome.REJECTED, reason="not_enrolled", message=messages.NOT_ENABLED)
        if stored.locked_until and stored.locked_until > now:
            return self._locked(user, stored.module, stored.locked_until, now)
        pending = self._take_pending(challenge_id, user, stored.module, now) if challenge_id else None
        module = self.registry.modules.get(stored.module)
        state = self._open_state(user, stored)
        if module is None or state is None:
            verdict = self._fail_mode(stored.module)
        else:
            request = VerifyRequest(
                settings=self.module_settings[module.name], user=user, now=now,
                answer={k: str(v) for k, v in answer.items()}, state=state, pending=pending,
            )
            verdict = self._judge(user, module, "verify", request)
        return self._settle(user, stored, verdict, now, event="verify")

    def recover(self, user: User, answer: Mapping[str, str], *, method: str = "backup_code") -> VerifyResult:
        """The way in without the device.

        ``backup_code`` (answer field ``code``): a one-use code logs the person in,
        keeps 2FA on and issues a replacement, shown once (WHMCS). 3 wrong codes lock
        for 15 minutes. Other methods are the module's (TOTP ``resync``).
        """
        now = self.clock()
        stored = self._load(user)
        if stored is None:
            return VerifyResult(outcome=Outcome.REJECTED, reason="not_enrolled", message=messages.NOT_ENABLED)
        if stored.locked_until and stored.locked_until > now:
            return self._locked(user, stored.module, stored.locked_until, now, event="recover")
        if method == "backup_code":
            return self._recover_with_backup_code(user, stored, answer, now)
        module = self.registry.modules.get(stored.module)
        if module is None or method not in module.info.recovery_methods:
            raise UnknownModule(f"recovery method {method!r} is not offered by module {stored.module!r}")
        state = self._open_state(user, stored)
        if state is None:
            verdict = self._fail_mode(stored.module)
        else:
            request = RecoverRequest(
                settings=self.module_settings[module.name], user=user, now=now, method=method,
                answer={k: str(v) for k, v in answer.items()}, state=state,
            )
            verdict = self._judge(user, module, "recover", request)
        return self._settle(user, stored, verdict, now, event="recover")

    def _recover_with_backup_code(
        self, user: User, stored: _Stored, answer: Mapping[str, str], now: float
    ) -> VerifyResult:
        candidate = backup.normalise(str(answer.get("code", "")))
        with self.engine.connect() as conn:
            unused = conn.execute(
                sa.select(_backup.c.id, _backup.c.code_hash).where(*self._who(_backup, user), _backup.c.used_at.is_(None))
            ).all()
        match = next((row.id for row in unused if candidate and backup.matches(candidate, row.code_hash)), None)
        with self.engine.begin() as conn:
            used = match is not None and conn.execute(
                _backup.update().where(_backup.c.id == match, _backup.c.used_at.is_(None)).values(used_at=now)
            ).rowcount == 1
            if used:
                code = backup.new_code()
                conn.execute(
                    _backup.insert().values(audience=user.audience.value, user_id=user.id, code_hash=backup.hash_code(code), created_at=now)
                )
                self._reset_throttle(conn, user, stored)
                self._audit(conn, user, stored.module, "recover", "ok", "backup_code", now=now)
                return VerifyResult(
                    outcome=Outcome.ACCEPTED, module=stored.module, reason="backup_code",
                    message=messages.BACKUP_LOGIN_OK, new_backup_codes=(backup.format_code(code),),
                )
            reason = "wrong_backup_code" if match is None else "replayed"
            return self._count_failure(conn, user, stored.module, "recover", reason, "backup_failures",
                                       self.settings.throttle.max_backup_failures, messages.WRONG_FACTOR, "", now)

    def _judge(self, user: User, module: LoadedModule, hook: str, request: Any) -> Verdict:
        try:
            verdict = getattr(module.hooks, hook)(request=request)
        except ModuleError as error:
            return Rejected(reason=error.reason, message=error.message, detail=error.detail, counts=False)
        except Exception as error:
            self._module_crashed(user, module.name, hook, error)
            return self._fail_mode(module.name)
        if not isinstance(verdict, Accepted | Rejected):
            self._module_crashed(user, module.name, hook, TypeError(f"returned {type(verdict).__name__}"))
            return self._fail_mode(module.name)
        return verdict

    def _fail_mode(self, module: str) -> Verdict:
        if self.settings.fail_closed:
            return Rejected(reason="module_unavailable", message=messages.MODULE_LOAD_ERROR, counts=False)
        log.warning("module %r is unavailable and fail_closed is off: letting the person in", module)
        return Accepted(reason="fail_open")

    def _settle(self, user: User, stored: _Stored, verdict: Verdict, now: float, *, event: str) -> VerifyResult:
        with self.engine.begin() as conn:
            if verdict.accepted and verdict.state is not None:
                sealed = self._seal_state(user, stored.module, verdict.state)
                written = conn.execute(
                    _COMPARE_AND_SET,
                    {"p_id": stored.id, "p_version": stored.version, "p_state": sealed,
                     "p_new_version": stored.version + 1, "p_now": now},
                ).rowcount
                if written != 1:
                    # Another submission changed the state first: this answer is a replay.
                    verdict = Rejected(reason="replayed")
            if verdict.accepted:
                self._reset_throttle(conn, user, stored)
                self._audit(conn, user, stored.module, event, "ok", verdict.reason, now=now)
                return VerifyResult(outcome=Outcome.ACCEPTED, module=stored.module, reason=verdict.reason, message=verdict.message)
            wrong = messages.WRONG_FACTOR if user.audience is Audience.CLIENT else messages.WRONG_FACTOR_ADMIN
            if not verdict.counts:
                self._audit(conn, user, stored.module, event, "fail", verdict.reason, now=now)
                return VerifyResult(
                    outcome=Outcome.REJECTED, module=stored.module, reason=verdict.reason,
                    message=verdict.message or wrong, detail=verdict.detail,
                )
            return self._count_failure(conn, user, stored.module, event, verdict.reason, "code_failures",
                                       self.settings.throttle.max_code_failures, verdict.message, verdict.detail, now)

    def _count_failure(
        self, conn: Connection, user: User, module: str, event: str, reason: str,
        counter: str, limit: int, message: str, detail: str, now: float,
    ) -> VerifyResult:
        column = _throttle.c[counter]
        expired = sa.and_(_throttle.c.locked_until.is_not(None), _throttle.c.locked_until <= now)
        # One atomic statement: concurrent failures each get their own count, and a
        # lockout that has run out starts the count again from one.
        count = conn.execute(
            _throttle.update()
            .where(*self._who(_throttle, user))
            .values({
                counter: sa.case((expired, 1), else_=column + 1),
                "locked_until": sa.case((expired, None), else_=_throttle.c.locked_until),
            })
            .returning(column)
        ).scalar()
        if count is None:  # no row (enrolled before throttling existed): start one
            conn.execute(_throttle.insert().values(audience=user.audience.value, user_id=user.id, **{counter: 1}))
            count = 1
        self._audit(conn, user, module, event, "fail", reason, now=now)
        if count >= limit:
            until = now + self.settings.throttle.lockout_minutes * 60
            if count == limit:
                # Only the failure that reaches the limit sets the lock; the ones racing
                # past it see the same lock and must not extend it.
                conn.execute(_throttle.update().where(*self._who(_throttle, user)).values(locked_until=until))
                self._audit(conn, user, module, "lockout", "info", counter, now=now)
                return self._locked_result(module, until)
            locked = conn.execute(sa.select(_throttle.c.locked_until).where(*self._who(_throttle, user))).scalar()
            return self._locked_result(module, locked or until)
        left = limit - count
        if not message:
            message = (
                messages.WRONG_FACTOR_CLIENT.format(attempts=left)
                if user.audience is Audience.CLIENT
                else messages.WRONG_FACTOR_ADMIN
            )
        return VerifyResult(
            outcome=Outcome.REJECTED, module=module, reason=reason, message=message, attempts_left=left, detail=detail
        )

    def _reset_throttle(self, conn: Connection, user: User, stored: _Stored) -> None:
        if stored.code_failures or stored.backup_failures or stored.locked_until:
            conn.execute(
                _throttle.update().where(*self._who(_throttle, user))
                .values(code_failures=0, backup_failures=0, locked_until=None)
            )

    def _locked(self, user: User, module: str, until: float, now: float, *, event: str = "verify") -> VerifyResult:
        self._audit_now(user, module, event, "fail", "locked", now=now)
        return self._locked_result(module, until)

    @staticmethod
    def _locked_result(module: str, until: float) -> VerifyResult:
        locked_until = _utc(until)
        return VerifyResult(
            outcome=Outcome.LOCKED, module=module, reason="locked", locked_until=locked_until, attempts_left=0,
            message=messages.LOCKED.format(until=locked_until.strftime("%Y-%m-%d %H:%M:%S UTC")),
        )

    # -- storage helpers -----------------------------------------------------------

    @staticmethod
    def _who(table: sa.Table, user: User) -> tuple[sa.ColumnElement[bool], ...]:
        return (table.c.audience == user.audience.value, table.c.user_id == user.id)

    def _load(self, user: User, conn: Connection | None = None) -> _Stored | None:
        params = {"p_audience": user.audience.value, "p_user_id": user.id}
        if conn is not None:
            row = conn.execute(_LOAD, params).first()
        else:
            with self.engine.connect() as own:
                row = own.execute(_LOAD, params).first()
        return _Stored(*row) if row is not None else None

    def _state_context(self, user: User, module: str) -> str:
        return f"enrolment:{user.audience.value}:{user.id}:{module}"

    def _seal_state(self, user: User, module: str, state: Mapping[str, Any]) -> str:
        return self.keyring.seal_json(dict(state), context=self._state_context(user, module))

    def _open_state(self, user: User, stored: _Stored) -> dict[str, Any] | None:
        """The person's module state, or ``None`` (logged, audited) when it does not open."""
        try:
            return self.keyring.unseal_json(stored.state, context=self._state_context(user, stored.module))  # type: ignore[return-value]
        except SealError as error:
            log.error("stored state of a %s user with module %r does not open: %s", user.audience.value, stored.module, error)
            self._audit_now(user, stored.module, "unseal", "fail", "state_unreadable")
            return None

    def _pending_context(self, kind: str, user: User, module: str) -> str:
        return f"pending:{kind}:{user.audience.value}:{user.id}:{module}"

    def _seal_pending(self, kind: str, user: User, module: str, data: Mapping[str, Any]) -> str:
        return self.keyring.seal_json(data, context=self._pending_context(kind, user, module))

    def _unseal_pending(self, row: Any, user: User) -> dict[str, Any]:
        return self.keyring.unseal_json(row.data, context=self._pending_context(row.kind, user, row.module))  # type: ignore[return-value]

    def _find_pending(self, token: str, kind: str, user: User, now: float) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(_pending).where(
                    _pending.c.id == _token_id(token), _pending.c.kind == kind,
                    *self._who(_pending, user), _pending.c.expires_at > now,
                )
            ).first()

    def _take_pending(self, token: str, user: User, module: str, now: float) -> dict[str, Any] | None:
        """Consume a challenge's pending data: once, by its owner, before it expires."""
        with self.engine.begin() as conn:
            row = conn.execute(
                _pending.delete()
                .where(_pending.c.id == _token_id(token), _pending.c.kind == "challenge", *self._who(_pending, user),
                       _pending.c.module == module)
                .returning(_pending.c.kind, _pending.c.module, _pending.c.data, _pending.c.expires_at)
            ).first()
        if row is None or row.expires_at <= now:
            return None
        return self._unseal_pending(row, user)

    def _purge_expired(self, conn: Connection, now: float) -> None:
        conn.execute(_pending.delete().where(_pending.c.expires_at <= now))

    # -- audit ---------------------------------------------------------------------

    def _audit(
        self, conn: Connection, user: User, module: str, event: str, outcome: str, reason: str = "",
        *, actor: str = "", detail: str = "", now: float | None = None,
    ) -> None:
        conn.execute(
            _AUDIT,
            {
                "at": _utc(self.clock() if now is None else now), "audience": user.audience.value, "user_id": user.id,
                "module": module, "event": event, "outcome": outcome, "reason": reason[:64], "actor": actor,
                "detail": detail[:500],
            },
        )

    def _audit_now(self, user: User, module: str, event: str, outcome: str, reason: str = "", **kw: Any) -> None:
        with self.engine.begin() as conn:
            self._audit(conn, user, module, event, outcome, reason, **kw)

    def _module_crashed(self, user: User, module: str, hook: str, error: BaseException) -> None:
        # The type and the frames only: a module's exception text may quote what it was given.
        log.error("module %r: hook %s raised %s", module, hook, type(error).__name__)
        log.debug("module %r failed at:\n%s", module, _frames(error))
        self._audit_now(user, module, hook, "fail", "module_error", detail=type(error).__name__)

    def audit_events(self, *, user: User | None = None, limit: int = 100) -> list[AuditEvent]:
        """The newest audit events first."""
        query = sa.select(_audit).order_by(_audit.c.id.desc()).limit(limit)
        if user is not None:
            query = query.where(*self._who(_audit, user))
        with self.engine.connect() as conn:
            return [AuditEvent(**row._mapping) for row in conn.execute(query)]

    # -- keys ----------------------------------------------------------------------

    def reseal_all(self) -> int:
        """Re-seal every stored value under the key ring's primary key.

        Each row is rewritten only if it is unchanged since it was read, and keeps its
        version, so logins running meanwhile are neither blocked nor turned away.
        """
        count = 0
        primary = self.keyring.primary
        with self.engine.connect() as conn:
            enrolments = conn.execute(sa.select(_enrolment.c.id, _enrolment.c.audience, _enrolment.c.user_id,
                                                _enrolment.c.module, _enrolment.c.state)).all()
            pendings = conn.execute(sa.select(_pending)).all()
        for row in enrolments:
            if self.keyring.key_of(row.state) == primary:
                continue
            context = f"enrolment:{row.audience}:{row.user_id}:{row.module}"
            fresh = self.keyring.seal(self.keyring.unseal(row.state, context=context), context=context)
            with self.engine.begin() as conn:
                count += conn.execute(
                    _enrolment.update().where(_enrolment.c.id == row.id, _enrolment.c.state == row.state).values(state=fresh)
                ).rowcount
        for row in pendings:
            if self.keyring.key_of(row.data) == primary:
                continue
            context = f"pending:{row.kind}:{row.audience}:{row.user_id}:{row.module}"
            fresh = self.keyring.seal(self.keyring.unseal(row.data, context=context), context=context)
            with self.engine.begin() as conn:
                count += conn.execute(
                    _pending.update().where(_pending.c.id == row.id, _pending.c.data == row.data).values(data=fresh)
                ).rowcount
        return count

