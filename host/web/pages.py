"""Login, second factor, backup code and security settings, for clients and for admins.

The two areas run the same flow with their own audience and URLs (WHMCS keeps clients and
administrators apart). The session keeps one slot per audience::

    {"account_id": 7, "stage": "second_factor" | "must_set_up" | "in", "remember": bool,
     "challenge": {"id": ..., "module": ..., "prompt": {...} | "redirect": True, "expires_at": ...},
     "setup_id": ...}

A challenge is started once and shown again on every page view, and after every wrong
answer that leaves it open (``VerifyResult.challenge_open``): a one-shot challenge (an
email code) is replaced only when the person asks for a new one. A challenge with
``redirect`` waits for the browser to come back from a redirecting module; only then does
``/login/{module}/callback`` judge anything.

Only ``stage == "in"`` is logged in; ``must_set_up`` is logged in but sent to the security
page until a second factor is enrolled (WHMCS's forced enrolment).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from secmod.hookspecs import BACKUP_CODE_METHOD, Audience, Field, Prompt, RecoveryMethod, messages
from secmod.host import (
    CALLBACK_PATH,
    Enrolled,
    LoginStep,
    ModuleUnavailable,
    NotEnrolled,
    Outcome,
    SecmodError,
    SetupExpired,
    UnknownModule,
    UserLocked,
    VerifyResult,
)

from .accounts import Account, AccountExists
from .app import Redirect, client_context, flash, render, require_csrf, session_of, web_of

log = logging.getLogger("secmod.web")

router = APIRouter(dependencies=[Depends(require_csrf)], include_in_schema=False)

LOGIN_FAILED = "Login Details Incorrect. Please try again."
REGISTERED = "Thank you for registering. Please log in to continue."
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024  # argon2 takes any length; this keeps a form post from costing megabytes
PASSWORD_CHANGED = "Your password has been changed."


@dataclass(frozen=True, slots=True)
class Area:
    """One side of the site: who logs in there and where its pages are."""

    audience: Audience
    prefix: str
    home: str
    title: str

    @property
    def slot(self) -> str:
        return self.audience.value

    @property
    def login(self) -> str:
        return f"{self.prefix}/login"

    @property
    def security(self) -> str:
        return f"{self.prefix}/account/security"

    @property
    def is_admin(self) -> bool:
        return self.audience is Audience.ADMIN


CLIENT = Area(Audience.CLIENT, "", "/clientarea", "Client Area")
ADMIN = Area(Audience.ADMIN, "/admin", "/admin", "Admin Area")
AREAS = {Audience.CLIENT: CLIENT, Audience.ADMIN: ADMIN}


# -- who is here -------------------------------------------------------------------

# Logged in; the last two see only their security page until they have set up a second
# factor (forced) or replaced a one-time password.
LOGGED_IN = ("in", "must_set_up", "must_change_password")


def _slot(request: Request, area: Area) -> dict[str, Any] | None:
    return session_of(request).get(area.slot)


def _current_slot(request: Request, area: Area) -> dict[str, Any]:
    """The area's slot of a session that has one (guarded pages), else empty."""
    return _slot(request, area) or {}


def _own_slot(request: Request, area: Area) -> dict[str, Any]:
    """The slot of a person this request already showed to be here; else back to login."""
    slot = _slot(request, area)
    if slot is None:
        raise Redirect(area.login)
    return slot


def _set_slot(request: Request, area: Area, slot: dict[str, Any] | None) -> None:
    if slot is None:
        session_of(request).pop(area.slot)
    else:
        session_of(request)[area.slot] = slot


def _account(request: Request, area: Area, *stages: str) -> Account | None:
    slot = _slot(request, area)
    if not slot or slot.get("stage") not in stages:
        return None
    return web_of(request).accounts.get(slot["account_id"], area.audience)


def signed_in(request: Request, area: Area, *, setup_allowed: bool = False) -> Account:
    """The logged-in account, or a redirect: to the login page, or (forced users) to setup."""
    account = _account(request, area, *LOGGED_IN)
    if account is None:
        raise Redirect(area.login)
    if _own_slot(request, area)["stage"] != "in" and not setup_allowed:
        raise Redirect(area.security)
    return account


def client_account(request: Request) -> Account:
    return signed_in(request, CLIENT)


def admin_account(request: Request) -> Account:
    return signed_in(request, ADMIN)


def _page(request: Request, area: Area, template: str, **context: Any) -> Response:
    account = _account(request, area, *LOGGED_IN)
    return render(request, template, area=area, account=account, **context)


# -- login -------------------------------------------------------------------------


def _start_login(request: Request, area: Area, account: Account, remember: bool) -> Response:
    """The password was right: a new session id, then whatever secmod says comes next."""
    session_of(request).rotate()
    return _next_step(request, area, account, {"account_id": account.id, "remember": remember})


def _next_step(request: Request, area: Area, account: Account, slot: dict[str, Any]) -> Response:
    state = web_of(request).host.login_state(account.as_user())
    if state.step is LoginStep.CHALLENGE:
        _set_slot(request, area, {**slot, "stage": "second_factor"})
        return RedirectResponse(f"{area.prefix}/login/2fa", status_code=303)
    if state.step is LoginStep.MUST_SET_UP:
        _set_slot(request, area, {**slot, "stage": "must_set_up"})
        return RedirectResponse(area.security, status_code=303)
    return _finish_login(request, area, slot)


def _finish_login(request: Request, area: Area, slot: dict[str, Any]) -> Response:
    """Fully in: another new session id, and only now is "remember me" honoured."""
    session = session_of(request)
    session.rotate()
    if slot.get("remember"):
        session.persistent = True
    if web_of(request).accounts.must_change_password(slot["account_id"]):
        # A one-time password (the first administrator's, or one an operator reset):
        # proven just now, so the only thing it may do is be replaced.
        proved_until = web_of(request).host.clock() + STEP_UP_SECONDS
        _set_slot(request, area, {"account_id": slot["account_id"], "stage": "must_change_password",
                                  "proved_until": proved_until})
        return RedirectResponse(area.security, status_code=303)
    _set_slot(request, area, {"account_id": slot["account_id"], "stage": "in"})
    return RedirectResponse(area.home, status_code=303)


def _login_form(request: Request, area: Area, *, error: str = "", email: str = "", status_code: int = 200) -> Response:
    if _account(request, area, "in") is not None:
        return RedirectResponse(area.home, status_code=303)
    return render(request, "login.html", area=area, account=None, error=error, email=email, status_code=status_code)


def _login(request: Request, area: Area) -> Response:
    form = request.state.form
    email = str(form.get("email", "")).strip()
    web = web_of(request)
    context = client_context(request)
    check = web.accounts.log_in(area.audience, email, str(form.get("password", "")), client_ip=context.client_ip)
    if check.locked_until is not None:
        if check.first_refusal:
            known = web.accounts.find(area.audience, email)
            web.host.record_event(
                "password_lockout", actor="web", outcome="fail", reason=check.scope, context=context,
                subject=known.as_user() if known and check.scope == "account" else None,
                detail=f"too many passwords for this {check.scope} from {context.client_ip or 'an unknown address'}",
            )
        until = datetime.fromtimestamp(check.locked_until, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return _login_form(request, area, error=messages.LOCKED.format(until=until), email=email, status_code=429)
    if check.account is None:
        return _login_form(request, area, error=LOGIN_FAILED, email=email, status_code=401)
    return _start_login(request, area, check.account, remember="remember" in form)


@router.api_route("/", methods=["GET", "HEAD"])
def index(request: Request) -> Response:
    return RedirectResponse(CLIENT.home if _account(request, CLIENT, "in") else CLIENT.login, status_code=303)


@router.get("/login")
def client_login_form(request: Request) -> Response:
    return _login_form(request, CLIENT)


@router.post("/login")
def client_login(request: Request) -> Response:
    return _login(request, CLIENT)


@router.get("/admin/login")
def admin_login_form(request: Request) -> Response:
    return _login_form(request, ADMIN)


@router.post("/admin/login")
def admin_login(request: Request) -> Response:
    return _login(request, ADMIN)


@router.post("/logout")
def client_logout(request: Request) -> Response:
    return _logout(request, CLIENT)


@router.post("/admin/logout")
def admin_logout(request: Request) -> Response:
    return _logout(request, ADMIN)


def _logout(request: Request, area: Area) -> Response:
    session = session_of(request)
    _set_slot(request, area, None)
    if not any(session.get(other.slot) for other in AREAS.values()):
        session.end()
    else:
        session.rotate()
    return RedirectResponse(area.login, status_code=303)


def _password_problem(password: str, confirm: object) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Your password must be at least {MIN_PASSWORD_LENGTH} characters long."
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"Your password must be at most {MAX_PASSWORD_LENGTH} characters long."
    if password != confirm:
        return "The passwords you entered did not match."
    return ""


@router.get("/register")
def register_form(request: Request) -> Response:
    return render(request, "register.html", area=CLIENT, account=None, error="", values={})


@router.post("/register")
def register(request: Request) -> Response:
    form = request.state.form
    values = {"email": str(form.get("email", "")).strip(), "name": str(form.get("name", "")).strip()}
    password = str(form.get("password", ""))
    error = ""
    if "@" not in values["email"] or len(values["email"]) > 255:
        error = "Please enter a valid email address."
    else:
        error = _password_problem(password, form.get("password_confirm"))
    if not error:
        try:
            web_of(request).accounts.create(Audience.CLIENT, values["email"], password, name=values["name"])
        except AccountExists:
            # Answered exactly as a new account (the password was hashed either way, so
            # the timing matches too): the page must not tell who has an account here.
            log.info("registration refused: the email belongs to an existing client account")
        flash(request, REGISTERED, "success")
        return RedirectResponse(CLIENT.login, status_code=303)
    return render(request, "register.html", area=CLIENT, account=None, error=error, values=values, status_code=400)


# -- the second factor --------------------------------------------------------------


def _pending(request: Request, area: Area) -> tuple[Account, dict[str, Any]]:
    slot = _slot(request, area)
    account = _account(request, area, "second_factor")
    if account is None or slot is None:
        raise Redirect(area.login)
    return account, slot


def _saved_prompt(saved: dict[str, Any]) -> Prompt:
    data = saved["prompt"]
    return Prompt(message=data["message"], instructions=data.get("instructions", ""),
                  fields=tuple(Field(**item) for item in data.get("fields", ())))


def _open_challenge(request: Request, slot: dict[str, Any]) -> dict[str, Any] | None:
    """The challenge this session started and may still answer, if any."""
    saved = slot.get("challenge")
    if not saved or saved["expires_at"] <= web_of(request).host.clock():
        return None
    return saved


def _challenge_page(request: Request, area: Area, *, result: VerifyResult | None = None, status_code: int = 200) -> Response:
    """Show the open challenge; or start one (or go to the provider, Duo); or say why not.

    After a rejection a new challenge is started only by the person (the "Try again"
    link), so a wrong answer never re-sends an email code or calls a provider again.
    """
    account, slot = _pending(request, area)
    host = web_of(request).host
    unavailable = ""
    locked = result is not None and result.outcome is Outcome.LOCKED
    prompt: Prompt | None = None
    saved = _open_challenge(request, slot)
    if saved is not None and "prompt" not in saved:
        saved = None  # a redirect (Duo): each page view is a new trip to the provider
    if result is not None and not result.challenge_open:
        saved = None
        slot = {key: value for key, value in slot.items() if key != "challenge"}
        _set_slot(request, area, slot)
    elif saved is not None and result is None and not _still_due(request, account, saved):
        # Disabled, or enrolled anew, since the challenge started: ask secmod what is due.
        return _next_step(request, area, account, {k: v for k, v in slot.items() if k != "challenge"})
    elif saved is not None:
        prompt = _saved_prompt(saved)
    elif result is None:
        try:
            started = host.begin_challenge(account.as_user(), context=client_context(request))
        except UserLocked as lockout:
            unavailable, locked = str(lockout), True
        except ModuleUnavailable as error:
            unavailable = str(error)
        except NotEnrolled:
            # Disabled by an admin since the password step: ask secmod again what is due.
            return _next_step(request, area, account, slot)
        else:
            if isinstance(started, VerifyResult):  # the provider is down and the operator chose fail open
                return _finish_login(request, area, slot)
            if started.prompt.redirect_url:
                # Duo: this page view is the way to the provider; nothing to show again.
                _set_slot(request, area, {**slot, "challenge": {
                    "id": started.challenge_id, "module": started.module, "redirect": True,
                    "expires_at": started.expires_at.timestamp(),
                }})
                return RedirectResponse(started.prompt.redirect_url, status_code=303)
            prompt = started.prompt
            shown = dataclasses.replace(prompt, provisioning=None)
            _set_slot(request, area, {**slot, "challenge": {
                "id": started.challenge_id, "module": started.module, "prompt": dataclasses.asdict(shown),
                "expires_at": started.expires_at.timestamp(),
            }})
    methods = [m for m in _recovery_methods(request, account) if m.name != BACKUP_CODE_METHOD]
    return _page(
        request, area, "second_factor.html", status_code=status_code,
        required=messages.SECOND_FACTOR_REQUIRED_ADMIN if area.is_admin else messages.SECOND_FACTOR_REQUIRED_CLIENT,
        prompt=prompt, result=result, unavailable=unavailable, recovery_methods=methods, locked=locked,
        backup_locked=_backup_locked_message(request, account),
    )


def _still_due(request: Request, account: Account, saved: dict[str, Any]) -> bool:
    state = web_of(request).host.login_state(account.as_user())
    return state.step is LoginStep.CHALLENGE and state.module == saved.get("module")


def _recovery_methods(request: Request, account: Account) -> tuple[RecoveryMethod, ...]:
    try:
        return web_of(request).host.recovery_methods(account.as_user())
    except SecmodError:
        return ()


def _judge(request: Request, area: Area, answer: dict[str, str]) -> Response:
    account, slot = _pending(request, area)
    saved = slot.get("challenge") or {}
    result = web_of(request).host.verify(account.as_user(), answer, challenge_id=saved.get("id"),
                                         context=client_context(request))
    if result.accepted:
        return _finish_login(request, area, slot)
    return _challenge_page(request, area, result=result, status_code=401 if result.outcome is Outcome.REJECTED else 429)


@router.get("/login/2fa")
def client_second_factor(request: Request) -> Response:
    return _challenge_page(request, CLIENT)


@router.post("/login/2fa")
def client_second_factor_answer(request: Request) -> Response:
    return _second_factor_answer(request, CLIENT)


@router.get("/admin/login/2fa")
def admin_second_factor(request: Request) -> Response:
    return _challenge_page(request, ADMIN)


@router.post("/admin/login/2fa")
def admin_second_factor_answer(request: Request) -> Response:
    return _second_factor_answer(request, ADMIN)


def _second_factor_answer(request: Request, area: Area) -> Response:
    _, slot = _pending(request, area)
    saved = _open_challenge(request, slot)
    if saved is None or "prompt" not in saved:
        # Nothing open to answer (expired meanwhile): show a fresh challenge instead.
        return _challenge_page(request, area)
    form = request.state.form
    return _judge(request, area, {field.name: str(form.get(field.name, "")) for field in _saved_prompt(saved).fields})


@router.get(CALLBACK_PATH)
def module_callback(request: Request, module: str) -> Response:
    """Where a redirecting module sends the browser back, for either area.

    The whole query is the answer, for the module to read; the challenge it belongs to
    is the one kept in this browser's session. Only a login waiting for this module's
    redirect is judged: any other visit (a cross-site link, a second tab, a stale
    bookmark) is ignored and never counted against the person.
    """
    answer = {key: value for key, value in request.query_params.items()}
    for area in (CLIENT, ADMIN):
        saved = (_slot(request, area) or {}).get("challenge") or {}
        if (_account(request, area, "second_factor") is not None and saved.get("redirect")
                and saved.get("module") == module):
            return _judge(request, area, answer)
    for area in (CLIENT, ADMIN):
        # Back from the provider during a step-up (replacing or removing the second factor).
        pending = _current_slot(request, area).get("step_up") or {}
        account = _account(request, area, *LOGGED_IN)
        if account is not None and pending.get("challenge_id") and pending.get("redirect_module") == module:
            result = web_of(request).host.verify(account.as_user(), answer, challenge_id=pending["challenge_id"],
                                                 context=client_context(request))
            return _step_up_judged(request, area, account, result, "second_factor")
    for area in (CLIENT, ADMIN):
        if _account(request, area, "second_factor") is not None:
            raise Redirect(f"{area.prefix}/login/2fa")
    raise Redirect(CLIENT.login)


# -- backup code ---------------------------------------------------------------------


def _backup_locked_message(request: Request, account: Account) -> str:
    """Why the backup code cannot be used now, and until when; ``""`` when it can."""
    status = web_of(request).host.status(account.as_user())
    if status is None or status.backup_locked_until is None:
        return ""
    return messages.BACKUP_CODES_LOCKED.format(until=status.backup_locked_until.strftime("%Y-%m-%d %H:%M:%S UTC"))


def _backup_form(request: Request, area: Area, *, result: VerifyResult | None = None, status_code: int = 200) -> Response:
    """The backup-code form. Backup codes have their own budget: a lockout from wrong codes
    leaves this form working; when backup codes are locked, it says so and until when."""
    account, _ = _pending(request, area)
    locked = ""
    if result is not None and result.outcome is Outcome.LOCKED and result.reason == "locked" and result.locked_until:
        locked = messages.BACKUP_CODES_LOCKED.format(until=result.locked_until.strftime("%Y-%m-%d %H:%M:%S UTC"))
        result = None
    elif result is None:
        locked = _backup_locked_message(request, account)
    return _page(request, area, "backup_login.html", result=result, locked=locked, status_code=status_code)


def _backup_login(request: Request, area: Area) -> Response:
    account, slot = _pending(request, area)
    code = str(request.state.form.get("code", ""))
    result = web_of(request).host.recover(account.as_user(), {"code": code}, method="backup_code",
                                          context=client_context(request))
    if not result.accepted:
        return _backup_form(request, area, result=result, status_code=401 if result.outcome is Outcome.REJECTED else 429)
    _finish_login(request, area, slot)
    # Shown in this response and kept nowhere: reloading cannot show it again.
    return _page(request, area, "backup_done.html", result=result)


@router.get("/login/backup")
def client_backup_form(request: Request) -> Response:
    return _backup_form(request, CLIENT)


@router.post("/login/backup")
def client_backup_login(request: Request) -> Response:
    return _backup_login(request, CLIENT)


@router.get("/admin/login/backup")
def admin_backup_form(request: Request) -> Response:
    return _backup_form(request, ADMIN)


@router.post("/admin/login/backup")
def admin_backup_login(request: Request) -> Response:
    return _backup_login(request, ADMIN)


# -- a module's recovery methods (TOTP: resync) ----------------------------------------


def _recovery_method(request: Request, area: Area, name: str) -> tuple[Account, dict[str, Any], RecoveryMethod]:
    account, slot = _pending(request, area)
    found = next((m for m in _recovery_methods(request, account) if m.name == name), None)
    if found is None or found.name == BACKUP_CODE_METHOD:  # the backup code has its own page
        raise HTTPException(status_code=404)
    return account, slot, found


def _recovery_form(request: Request, area: Area, name: str, *, result: VerifyResult | None = None,
                   status_code: int = 200) -> Response:
    _, _, method = _recovery_method(request, area, name)
    return _page(request, area, "recover.html", method=method, result=result, status_code=status_code)


def _recovery_answer(request: Request, area: Area, name: str) -> Response:
    account, slot, method = _recovery_method(request, area, name)
    form = request.state.form
    answer = {f.name: f.value if f.kind == "hidden" else str(form.get(f.name, "")) for f in method.prompt.fields}
    result = web_of(request).host.recover(account.as_user(), answer, method=method.name,
                                          context=client_context(request))
    if result.accepted:
        return _finish_login(request, area, slot)
    return _recovery_form(request, area, name, result=result,
                          status_code=401 if result.outcome is Outcome.REJECTED else 429)


@router.get("/login/recover/{method}")
def client_recovery_form(request: Request, method: str) -> Response:
    return _recovery_form(request, CLIENT, method)


@router.post("/login/recover/{method}")
def client_recovery_answer(request: Request, method: str) -> Response:
    return _recovery_answer(request, CLIENT, method)


@router.get("/admin/login/recover/{method}")
def admin_recovery_form(request: Request, method: str) -> Response:
    return _recovery_form(request, ADMIN, method)


@router.post("/admin/login/recover/{method}")
def admin_recovery_answer(request: Request, method: str) -> Response:
    return _recovery_answer(request, ADMIN, method)


# -- the client area ------------------------------------------------------------------


@router.get("/clientarea")
def client_home(request: Request) -> Response:
    account = client_account(request)
    return _page(request, CLIENT, "clientarea.html", status=web_of(request).host.status(account.as_user()))


# -- security settings: enable and disable 2FA -----------------------------------------


def _security_page(request: Request, area: Area, *, error: str = "", notice: str = "", status_code: int = 200,
                   new_backup_codes: tuple[str, ...] = ()) -> Response:
    account = signed_in(request, area, setup_allowed=True)
    host = web_of(request).host
    user = account.as_user()
    choices = [(name, host.modules[name].info) for name in host.enabled_modules(area.audience)]
    status = host.status(user)
    module = host.modules.get(status.module) if status else None
    forced = ""
    if _own_slot(request, area).get("stage") == "must_set_up":
        forced = messages.FORCED_ADMIN if area.is_admin else messages.FORCED_CLIENT
    return _page(
        request, area, "security.html", status_code=status_code, status=status, choices=choices, error=error, forced=forced,
        module_name=module.info.friendly_name if module else (status.module if status else ""),
        notice=notice, new_backup_codes=new_backup_codes, proved=_proved(request, area),
        must_change_password=_current_slot(request, area).get("stage") == "must_change_password",
    )


def _setup_page(request: Request, area: Area, step: Any, *, status_code: int = 200) -> Response:
    return _page(request, area, "setup.html", step=step, status_code=status_code,
                 module=web_of(request).host.modules[step.module].info)


def _enrolled_page(request: Request, area: Area, enrolled: Enrolled) -> Response:
    slot = _own_slot(request, area)
    if slot.get("stage") == "must_set_up":
        # A forced user who just proved a second factor: fully in, remember me honoured now.
        _finish_login(request, area, slot)
    else:
        _set_slot(request, area, {k: v for k, v in slot.items() if k != "setup_id"})
    return _page(request, area, "enrolled.html", enrolled=enrolled)


# -- step-up: proof of identity before changing the second factor or the password -------

STEP_UP_SECONDS = 5 * 60
STEP_UP_NEEDED = (
    "Confirm it's you first: enter your password and a code from your second factor (or a backup code)."
)
STEP_UP_DONE = "Thank you. For the next five minutes you can now change or remove your second factor, or change your password."


def _proved(request: Request, area: Area) -> bool:
    slot = _slot(request, area) or {}
    return slot.get("proved_until", 0) > web_of(request).host.clock()


def _require_step_up(request: Request, area: Area) -> Response | None:
    """Every route that replaces or removes a second factor, or changes the password, calls
    this first (by route, whatever the module). The proof is used up by the action."""
    if _proved(request, area):
        _use_step_up(request, area)
        return None
    return _security_page(request, area, error=STEP_UP_NEEDED, status_code=403)


def _use_step_up(request: Request, area: Area) -> None:
    _set_slot(request, area, {k: v for k, v in _current_slot(request, area).items() if k != "proved_until"})


def _grant_step_up(request: Request, area: Area, account: Account, how: str,
                   result: VerifyResult | None = None) -> Response:
    web = web_of(request)
    slot = {k: v for k, v in _current_slot(request, area).items() if k != "step_up"}
    _set_slot(request, area, {**slot, "proved_until": web.host.clock() + STEP_UP_SECONDS})
    web.host.record_event("step_up", actor="self", outcome="ok", reason=how, subject=account.as_user(),
                          context=client_context(request))
    return _security_page(request, area, notice=STEP_UP_DONE,
                          new_backup_codes=result.new_backup_codes if result else ())


def _step_up_page(request: Request, area: Area, *, error: str = "", result: VerifyResult | None = None,
                  prompt: Any = None, status_code: int = 200) -> Response:
    return _page(request, area, "step_up.html", error=error, result=result, prompt=prompt, status_code=status_code)


def _step_up_password(request: Request, area: Area) -> Response:
    """First the password (throttled like the login form), then the second factor."""
    account = signed_in(request, area)
    web = web_of(request)
    context = client_context(request)
    check = web.accounts.log_in(area.audience, account.email, str(request.state.form.get("password", "")),
                                client_ip=context.client_ip)
    if check.locked_until is not None:
        until = datetime.fromtimestamp(check.locked_until, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return _security_page(request, area, error=messages.LOCKED.format(until=until), status_code=403)
    if check.account is None or check.account.id != account.id:
        web.host.record_event("step_up", actor="self", outcome="fail", reason="wrong_password",
                              subject=account.as_user(), context=context)
        return _security_page(request, area, error=messages.PASSWORD_INCORRECT, status_code=403)
    if web.host.status(account.as_user()) is None:
        return _grant_step_up(request, area, account, "password")
    try:
        started = web.host.begin_challenge(account.as_user(), context=context)
    except (UserLocked, ModuleUnavailable) as error:
        # The backup code is still a way (the host refuses it too while locked).
        _set_slot(request, area, {**_current_slot(request, area), "step_up": {"password_ok": True}})
        return _step_up_page(request, area, error=str(error), status_code=403 if isinstance(error, UserLocked) else 503)
    if isinstance(started, VerifyResult):
        # The provider is down and the operator lets logins through (fail open): that is
        # no proof of identity for changing the factor itself. The backup code still is.
        _set_slot(request, area, {**_current_slot(request, area), "step_up": {"password_ok": True}})
        return _step_up_page(request, area, error=messages.MODULE_LOAD_ERROR, status_code=503)
    _set_slot(request, area, {**_current_slot(request, area), "step_up": {
        "password_ok": True, "challenge_id": started.challenge_id,
        "fields": [field.name for field in started.prompt.fields],
        "redirect_module": started.module if started.prompt.redirect_url else None}})
    if started.prompt.redirect_url:
        return RedirectResponse(started.prompt.redirect_url, status_code=303)
    return _step_up_page(request, area, prompt=started.prompt)


def _step_up_pending(request: Request, area: Area) -> tuple[Account, dict[str, Any]]:
    account = signed_in(request, area)
    pending = _current_slot(request, area).get("step_up")
    if not pending or not pending.get("password_ok"):
        raise Redirect(area.security)
    return account, pending


def _step_up_judged(request: Request, area: Area, account: Account, result: VerifyResult, how: str) -> Response:
    if result.accepted:
        return _grant_step_up(request, area, account, how, result)
    # The password is asked again with the next code: a wrong code ends this attempt.
    _set_slot(request, area, {k: v for k, v in _current_slot(request, area).items() if k != "step_up"})
    return _security_page(request, area, error=result.message or messages.WRONG_FACTOR, status_code=403)


def _step_up_code(request: Request, area: Area) -> Response:
    account, pending = _step_up_pending(request, area)
    form = request.state.form
    answer = {name: str(form.get(name, "")) for name in pending.get("fields", [])}
    result = web_of(request).host.verify(account.as_user(), answer, challenge_id=pending.get("challenge_id"),
                                         context=client_context(request))
    return _step_up_judged(request, area, account, result, "second_factor")


def _step_up_backup(request: Request, area: Area) -> Response:
    account, _ = _step_up_pending(request, area)
    code = str(request.state.form.get("backup_code", ""))
    result = web_of(request).host.recover(account.as_user(), {"code": code}, method="backup_code",
                                          context=client_context(request))
    return _step_up_judged(request, area, account, result, "backup_code")


def _change_password(request: Request, area: Area) -> Response:
    account = signed_in(request, area, setup_allowed=True)
    if not _proved(request, area):
        # Before anything else: the answers below must not become a way to test passwords.
        return _security_page(request, area, error=STEP_UP_NEEDED, status_code=403)
    form = request.state.form
    password = str(form.get("new_password", ""))
    web = web_of(request)
    error = _password_problem(password, form.get("new_password_confirm"))
    if not error and web.accounts.check_password(account, password):
        error = "Choose a new password, not the one you have now."
    if error:
        return _security_page(request, area, error=error, status_code=400)
    _use_step_up(request, area)
    web.accounts.set_password(account, password)
    web.host.record_event("password_change", actor="self", outcome="ok", subject=account.as_user(),
                          context=client_context(request))
    session_of(request).rotate()
    if _current_slot(request, area).get("stage") == "must_change_password":
        _set_slot(request, area, {"account_id": account.id, "stage": "in"})
        flash(request, PASSWORD_CHANGED, "success")
        return RedirectResponse(area.home, status_code=303)
    return _security_page(request, area, notice=PASSWORD_CHANGED)


def _begin_setup(request: Request, area: Area) -> Response:
    account = signed_in(request, area, setup_allowed=True)
    if web_of(request).host.status(account.as_user()) is not None:
        # Replacing the second factor someone has: prove it is them first.
        refused = _require_step_up(request, area)
        if refused is not None:
            return refused
    module = str(request.state.form.get("module", ""))
    try:
        step = web_of(request).host.begin_setup(account.as_user(), module)
    except UnknownModule:
        return _security_page(request, area, error=messages.NOT_ENABLED, status_code=400)
    except ModuleUnavailable as error:
        return _security_page(request, area, error=str(error), status_code=503)
    if isinstance(step, Enrolled):
        return _enrolled_page(request, area, step)
    _set_slot(request, area, {**_own_slot(request, area), "setup_id": step.setup_id})
    return _setup_page(request, area, step)


def _confirm_setup(request: Request, area: Area) -> Response:
    account = signed_in(request, area, setup_allowed=True)
    slot = _own_slot(request, area)
    form = request.state.form
    setup_id = slot.get("setup_id")
    if not setup_id:
        raise Redirect(area.security)
    try:
        step = web_of(request).host.continue_setup(
            account.as_user(), setup_id, {key: str(value) for key, value in form.items() if key != "csrf_token"}
        )
    except SetupExpired as expired:
        flash(request, str(expired), "error")
        raise Redirect(area.security) from None
    except SecmodError as error:
        return _security_page(request, area, error=str(error), status_code=503)
    if isinstance(step, Enrolled):
        return _enrolled_page(request, area, step)
    return _setup_page(request, area, step, status_code=400 if step.error else 200)


def _disable(request: Request, area: Area) -> Response:
    account = signed_in(request, area)
    web = web_of(request)
    refused = _require_step_up(request, area)
    if refused is not None:
        return refused
    web.host.disable(account.as_user(), actor="self")
    flash(request, messages.DISABLED, "success")
    return RedirectResponse(area.security, status_code=303)


@router.get("/account/security")
def client_security(request: Request) -> Response:
    return _security_page(request, CLIENT)


@router.post("/account/security/setup")
def client_begin_setup(request: Request) -> Response:
    return _begin_setup(request, CLIENT)


@router.post("/account/security/setup/confirm")
def client_confirm_setup(request: Request) -> Response:
    return _confirm_setup(request, CLIENT)


@router.post("/account/security/disable")
def client_disable(request: Request) -> Response:
    return _disable(request, CLIENT)


@router.post("/account/security/step-up")
def client_step_up(request: Request) -> Response:
    return _step_up_password(request, CLIENT)


@router.post("/account/security/step-up/verify")
def client_step_up_code(request: Request) -> Response:
    return _step_up_code(request, CLIENT)


@router.post("/account/security/step-up/backup")
def client_step_up_backup(request: Request) -> Response:
    return _step_up_backup(request, CLIENT)


@router.post("/account/security/password")
def client_change_password(request: Request) -> Response:
    return _change_password(request, CLIENT)


@router.get("/admin/account/security")
def admin_security(request: Request) -> Response:
    return _security_page(request, ADMIN)


@router.post("/admin/account/security/setup")
def admin_begin_setup(request: Request) -> Response:
    return _begin_setup(request, ADMIN)


@router.post("/admin/account/security/setup/confirm")
def admin_confirm_setup(request: Request) -> Response:
    return _confirm_setup(request, ADMIN)


@router.post("/admin/account/security/disable")
def admin_disable(request: Request) -> Response:
    return _disable(request, ADMIN)


@router.post("/admin/account/security/step-up")
def admin_step_up(request: Request) -> Response:
    return _step_up_password(request, ADMIN)


@router.post("/admin/account/security/step-up/verify")
def admin_step_up_code(request: Request) -> Response:
    return _step_up_code(request, ADMIN)


@router.post("/admin/account/security/step-up/backup")
def admin_step_up_backup(request: Request) -> Response:
    return _step_up_backup(request, ADMIN)


@router.post("/admin/account/security/password")
def admin_change_password(request: Request) -> Response:
    return _change_password(request, ADMIN)
