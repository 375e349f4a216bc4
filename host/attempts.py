"""WHMCS's throttle on top of the Store's reservations: which budgets an attempt spends,
and what the person is told once it is judged.

An attempt is reserved before the module sees it (:meth:`secmod.host.store.Store.begin_attempt`),
so a wrong answer has already paid: settling it only records it and says how many
attempts are left, or that the person is now locked out. A right answer clears the
person's budgets and gives the address's reservation back; an answer nobody could judge
(a crash, an outage, state that does not open) is given back whole.
"""

from __future__ import annotations

from secmod.hookspecs import Accepted, Audience, Rejected, User, Verdict, messages
from secmod.settings import ThrottleSettings

from . import backup
from .calls import Crashed, ModuleCaller
from .context import RequestContext
from .outcomes import Outcome, VerifyResult, locked_result
from .sealed import SealedValues
from .store import Attempt, AuditRow, Budget, Store

__all__ = ["Attempts"]


class Attempts:
    """Budgets and verdicts for one Host."""

    def __init__(self, settings: ThrottleSettings, store: Store, sealed: SealedValues) -> None:
        self.settings = settings
        self.store = store
        self.sealed = sealed

    def budgets(self, user: User, kind: str, context: RequestContext) -> tuple[Budget, ...]:
        """The person's budget for ``kind`` (``code`` or ``backup``), and the client address's."""
        throttle = self.settings
        lock = throttle.lockout_minutes * 60
        own = (Budget(Store.backup_key(user), throttle.max_backup_failures, lock) if kind == "backup"
               else Budget(Store.code_key(user), throttle.max_code_failures, lock))
        if not context.client_ip:
            return (own,)
        address = Budget(f"address:{context.client_ip}", throttle.max_address_failures,
                         throttle.address_window_minutes * 60)
        return (own, address)

    def reset_keys(self, user: User) -> list[str]:
        """What a right answer clears: both of the person's budgets."""
        return [Store.code_key(user), Store.backup_key(user)]

    @staticmethod
    def release_keys(attempt: Attempt) -> list[str]:
        """What a right answer gives back rather than clears: the address's reservation."""
        return [b.key for b in attempt.budgets[1:]]

    def refused(self, attempt: Attempt, now: float, context: RequestContext, event: str) -> VerifyResult | None:
        """The answer for an attempt that must not be judged: not enrolled, or locked."""
        if attempt.enrolment is None:
            if attempt.reserved:
                self.store.release(attempt)
            return VerifyResult(outcome=Outcome.REJECTED, reason="not_enrolled", message=messages.NOT_ENABLED)
        if attempt.reserved:
            return None
        key = attempt.refused[0]
        budget = next(b for b in attempt.budgets if b.key == key)
        until = self.store.lock_of(key, now) or now + budget.lock_seconds
        reason = "address_locked" if key.startswith("address:") else "locked"
        self.store.audit(AuditRow.about(attempt.user, now, context, module=attempt.enrolment.module, event=event,
                             outcome="fail", reason=reason))
        return locked_result(attempt.enrolment.module, until, reason=reason)

    @staticmethod
    def unjudged(caller: ModuleCaller | None, state: object) -> Rejected:
        # Nobody could judge the answer: refuse, and never blame the person for it.
        reason = "module_unavailable" if caller is None else "state_unreadable"
        return Rejected(reason=reason, message=messages.MODULE_LOAD_ERROR, counts=False)

    def settle(self, attempt: Attempt, verdict: Verdict, now: float, context: RequestContext, event: str) -> VerifyResult:
        user, stored = attempt.user, attempt.enrolment
        assert stored is not None
        audit = AuditRow.about(user, now, context, module=stored.module, event=event, outcome="ok",
                         reason=verdict.reason, detail=verdict.error_type if isinstance(verdict, Crashed) else "")
        if isinstance(verdict, Accepted):
            sealed = self.sealed.seal_state(user, stored.module, verdict.state) if verdict.state is not None else None
            if self.store.settle_accepted(attempt, sealed, now, audit, reset=self.reset_keys(user),
                                          release=self.release_keys(attempt)):
                return VerifyResult(outcome=Outcome.ACCEPTED, module=stored.module, reason=verdict.reason,
                                    message=verdict.message)
            return self.counted_failure(attempt, "replayed", "", "", now, context, event, audited=True)
        if not verdict.counts:
            self.store.release(attempt, audit.but(outcome="fail"))
            wrong = messages.WRONG_FACTOR if user.audience is Audience.CLIENT else messages.WRONG_FACTOR_ADMIN
            return VerifyResult(outcome=Outcome.REJECTED, module=stored.module, reason=verdict.reason,
                                message=verdict.message or wrong, detail=verdict.detail)
        return self.counted_failure(attempt, verdict.reason, verdict.message, verdict.detail, now, context, event)

    def counted_failure(self, attempt: Attempt, reason: str, message: str, detail: str, now: float,
                         context: RequestContext, event: str, *, audited: bool = False) -> VerifyResult:
        """A wrong answer: its reservation already counted it; say what is left."""
        user, module = attempt.user, attempt.enrolment.module if attempt.enrolment else ""
        own = attempt.budgets[0]
        count = attempt.count(own.key)
        rows = [] if audited else [AuditRow.about(user, now, context, module=module, event=event,
                                            outcome="fail", reason=reason)]
        locked = count >= own.max_failures
        if locked:
            rows.append(AuditRow.about(user, now, context, module=module, event="lockout", outcome="info",
                                 reason=own.key.split(":", 1)[0] + "_failures"))
        for budget in attempt.budgets[1:]:
            if attempt.count(budget.key) == budget.max_failures:
                rows.append(AuditRow.about(user, now, context, module=module, event="lockout", outcome="info",
                                     reason="address_failures"))
        if rows:
            self.store.audit(*rows)
        if locked:
            return locked_result(module, now + own.lock_seconds)
        left = own.max_failures - count
        if not message:
            message = (messages.WRONG_FACTOR_CLIENT.format(attempts=left) if user.audience is Audience.CLIENT
                       else messages.WRONG_FACTOR_ADMIN)
        return VerifyResult(outcome=Outcome.REJECTED, module=module, reason=reason, message=message,
                            attempts_left=left, detail=detail)

    def settle_backup_code(self, attempt: Attempt, typed: str, now: float, context: RequestContext) -> VerifyResult:
        """Judge a backup code: one use, whoever races; a replacement is issued and shown once."""
        user, stored = attempt.user, attempt.enrolment
        assert stored is not None
        candidate = backup.normalise(typed)
        unused = self.store.unused_backup_codes(user)
        match = next((code_id for code_id, hashed in unused if candidate and backup.matches(candidate, hashed)), None)
        if match is None:
            return self.counted_failure(attempt, "wrong_backup_code", messages.WRONG_FACTOR, "", now, context, "recover")
        code = backup.new_code()
        audit = AuditRow.about(user, now, context, module=stored.module, event="recover", outcome="ok",
                               reason="backup_code")
        if self.store.use_backup_code(user, match, backup.hash_code(code), now, audit,
                                      reset=self.reset_keys(user), release=self.release_keys(attempt)):
            return VerifyResult(outcome=Outcome.ACCEPTED, module=stored.module, reason="backup_code",
                                message=messages.BACKUP_LOGIN_OK, new_backup_codes=(backup.format_code(code),))
        return self.counted_failure(attempt, "replayed", "", "", now, context, "recover", audited=True)
