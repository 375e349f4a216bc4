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
from dataclasses import dataclass
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

router = APIRouter(dependencies=[Depends(require_csrf)], include_in_schema=False)

LOGIN_FAILED = "Login Details Incorrect. Please try again."
MIN_PASSWORD_LENGTH = 8


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


def _slot(request: Request, area: Area) -> dict[str, Any] | None:
    return session_of(request).get(area.slot)


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
    account = _account(request, area, "in", "must_set_up")
    if account is None:
        raise Redirect(area.login)
    if _own_slot(request, area)["stage"] == "must_set_up" and not setup_allowed:
        raise Redirect(area.security)
    return account


def client_account(request: Request) -> Account:
    return signed_in(request, CLIENT)


def admin_account(request: Request) -> Account:
    return signed_in(request, ADMIN)


def _page(request: Request, area: Area, template: str, **context: Any) -> Response:
    account = _account(request, area, "in", "must_set_up")
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
    _set_slot(request, area, {"account_id": slot["account_id"], "stage": "in"})
    return RedirectResponse(area.home, status_code=303)


def _login_form(request: Request, area: Area, *, error: str = "", email: str = "", status_code: int = 200) -> Response:
    if _account(request, area, "in") is not None:
        return RedirectResponse(area.home, status_code=303)
    return render(request, "login.html", area=area, account=None, error=error, email=email, status_code=status_code)


def _login(request: Request, area: Area) -> Response:
    form = request.state.form
    email = str(form.get("email", "")).strip()
    account = web_of(request).accounts.authenticate(area.audience, email, str(form.get("password", "")))
    if account is None:
        return _login_form(request, area, error=LOGIN_FAILED, email=email, status_code=401)
    return _start_login(request, area, account, remember="remember" in form)


@router.get("/")
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
    elif len(password) < MIN_PASSWORD_LENGTH:
        error = f"Your password must be at least {MIN_PASSWORD_LENGTH} characters long."
    elif password != form.get("password_confirm"):
        error = "The passwords you entered did not match."
    if not error:
        try:
            account = web_of(request).accounts.create(Audience.CLIENT, values["email"], password, name=values["name"])
        except AccountExists as exists:
            error = str(exists)
        else:
            return _start_login(request, CLIENT, account, remember=False)
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
        except UserLocked as locked:
            unavailable = str(locked)
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
        prompt=prompt, result=result, unavailable=unavailable, recovery_methods=methods,
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
        if _account(request, area, "second_factor") is not None:
            raise Redirect(f"{area.prefix}/login/2fa")
    raise Redirect(CLIENT.login)


# -- backup code ---------------------------------------------------------------------


def _backup_form(request: Request, area: Area, *, result: VerifyResult | None = None, status_code: int = 200) -> Response:
    _pending(request, area)
    return _page(request, area, "backup_login.html", result=result, status_code=status_code)


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


def _security_page(request: Request, area: Area, *, error: str = "", status_code: int = 200) -> Response:
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


def _begin_setup(request: Request, area: Area) -> Response:
    account = signed_in(request, area, setup_allowed=True)
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
    if not web.accounts.check_password(account, str(request.state.form.get("password", ""))):
        return _security_page(request, area, error=messages.PASSWORD_INCORRECT, status_code=400)
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
