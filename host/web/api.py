"""The JSON API (``/api/v1``): secmod for host applications written in other languages.

The host application keeps its own accounts and passwords, exactly as an embedded Python
host would, and names the person in each call (``user``: id, audience, email). Every call
needs ``Authorization: Bearer <[web] api_token>``. Every error is
``{"error": {"code": "<stable code>", "message": "<text for a person>"}}``.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, Field
from secmod.hookspecs import Audience, Prompt, User
from secmod.host import (
    Enrolled,
    Host,
    LoginStep,
    ModuleUnavailable,
    NotEnrolled,
    Outcome,
    RequestContext,
    SetupExpired,
    SetupStarted,
    UnknownModule,
    UserLocked,
    VerifyResult,
)
from starlette.concurrency import run_in_threadpool

__all__ = ["HTTP_CODES", "ApiError", "error_response", "router"]

HTTP_CODES = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 422: "invalid_request"}


class ApiError(Exception):
    """An API failure with its HTTP status and stable code."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status, headers=headers)


# auto_error off: a missing token gets this API's own error body, not FastAPI's.
_bearer = HTTPBearer(auto_error=False, description="[web] api_token from secmod.toml")


async def require_token(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    token = request.app.state.web.web_secret("api_token")
    if not token:
        raise ApiError(503, "api_disabled", "The JSON API is off: set [web] api_token in secmod.toml to turn it on.")
    sent = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(sent.encode(), token.encode()):
        raise ApiError(401, "unauthorized", "Send the API token as 'Authorization: Bearer <token>'.")


class ErrorBody(BaseModel):
    code: str = Field(description="Stable: api_disabled, unauthorized, invalid_request, not_found, user_locked, "
                                  "not_enrolled, module_unavailable, unknown_module, setup_expired, "
                                  "step_up_required, step_up_failed")
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {401: "missing or wrong API token", 403: "step_up_required or step_up_failed",
                         422: "invalid request", 503: "API off, module or database unavailable"}.items()
}

router = APIRouter(prefix="/api/v1", tags=["two-factor"], dependencies=[Depends(require_token)], responses=ERRORS)


def _storable(value: str) -> str:
    """Refuse what a database cannot hold (PostgreSQL: NUL) or UTF-8 cannot encode."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
        raise ValueError("must be valid Unicode (no lone surrogates)")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    return value


Text = Annotated[str, AfterValidator(_storable)]
"""Every string the API takes: storable in any database."""
Identifier = Annotated[str, AfterValidator(_storable), AfterValidator(_not_blank)]
AnswerKey = Annotated[Text, Field(max_length=64)]
AnswerValue = Annotated[Text, Field(max_length=4096)]
Answer = Annotated[dict[AnswerKey, AnswerValue], Field(max_length=16)]


class Person(BaseModel):
    """The person, as the host application knows them (secmod stores only this id)."""

    id: Identifier = Field(min_length=1, max_length=255)
    audience: Audience = Audience.CLIENT
    email: Text = Field("", max_length=255)
    name: Text = Field("", max_length=255)

    def as_user(self) -> User:
        return User(id=self.id, audience=self.audience, email=self.email, name=self.name)


class ClientContext(BaseModel):
    """The end user's connection as your application saw it (not your server's own)."""

    client_ip: str = Field("", max_length=64, description="Keys the per-address throttle; recorded in the audit log")
    user_agent: str = Field("", max_length=255, description="Recorded in the audit log")

    def as_context(self) -> RequestContext:
        return RequestContext(client_ip=self.client_ip, user_agent=self.user_agent)


class UserRequest(BaseModel):
    user: Person
    context: ClientContext | None = Field(None, description="The end user's IP and browser, for throttling and audit")

    def request_context(self) -> RequestContext | None:
        return self.context.as_context() if self.context is not None else None


class VerifyRequest(UserRequest):
    answer: Answer = Field(default_factory=dict, description="The prompt's fields, e.g. {\"code\": \"123456\"}")
    challenge_id: Text | None = Field(None, max_length=255,
                                      description="From /challenge; required by redirecting modules (Duo)")


class StepUp(BaseModel):
    """Proof that the person is there: their current code, or a backup code.

    Checked by secmod like a login answer (throttled, one-use). The host application
    checks the person's password itself before calling, as it does at login.
    """

    answer: Answer = Field(default_factory=dict, description="The challenge's fields, e.g. {\"code\": \"123456\"}")
    challenge_id: Text | None = Field(None, max_length=255, description="From /challenge, for modules that need one")
    backup_code: Text | None = Field(None, max_length=255, description="Instead of the answer")


class SetupRequest(UserRequest):
    module: Identifier = Field(max_length=64)
    step_up: StepUp | None = Field(None, description="Required when the person already has a second factor (replacing it)")


class SetupContinueRequest(UserRequest):
    setup_id: Identifier = Field(max_length=255)
    answer: Answer = Field(default_factory=dict)


class RecoverRequest(UserRequest):
    method: Identifier = Field("backup_code", max_length=64,
                               description="backup_code (answer {\"code\"}), or a module's own (totp: resync)")
    answer: Answer = Field(default_factory=dict)


class DisableRequest(UserRequest):
    actor: Identifier = Field("api", max_length=200, description="Who did it, for the audit log; 'admin:<id>' for an "
                                                          "administrator's action, which needs no step_up")
    step_up: StepUp | None = Field(None, description="Required unless actor is an administrator ('admin:<id>')")


class FieldOut(BaseModel):
    name: str
    label: str
    kind: str
    placeholder: str = ""
    max_length: int | None = None
    required: bool = True


class CeremonyOut(BaseModel):
    """Run it in the person's browser, then send the result back in the answer."""

    kind: Literal["webauthn.create", "webauthn.get"] = Field(
        description="webauthn.create: navigator.credentials.create(); "
                    "webauthn.get: navigator.credentials.get()")
    options: dict[str, Any] = Field(
        description="PublicKeyCredentialCreationOptionsJSON / RequestOptionsJSON: binary members "
                    "are base64url; PublicKeyCredential.parseCreationOptionsFromJSON() / "
                    "parseRequestOptionsFromJSON() take it as is")
    answer_field: str = Field(
        description="Send the credential's toJSON(), as JSON text, in answer[answer_field]")


class ProvisioningOut(BaseModel):
    secret: str
    uri: str
    qr_svg: str


class PromptOut(BaseModel):
    message: str
    instructions: str = ""
    fields: list[FieldOut] = []
    redirect_url: str | None = None
    provisioning: ProvisioningOut | None = Field(None, description="Only during setup: show it to its owner once")
    ceremony: CeremonyOut | None = Field(
        None, description="A security key or passkey: a browser must run this")


class LoginStateOut(BaseModel):
    step: LoginStep
    module: str | None
    choices: list[str]
    message: str


class ChallengeOut(BaseModel):
    admitted: bool = Field(False, description="True when no challenge is needed: the module's provider is down and "
                                              "the operator chose fail_mode = open (audited as fail_open); log the "
                                              "person in. challenge_id, prompt and expires_at are then empty.")
    challenge_id: str | None
    module: str
    prompt: PromptOut | None
    expires_at: datetime | None


class VerifyOut(BaseModel):
    outcome: Outcome
    module: str | None
    message: str
    reason: str
    attempts_left: int | None
    locked_until: datetime | None
    detail: str
    new_backup_codes: list[str]
    challenge_open: bool = Field(
        description="The same challenge_id may be answered again (a rejected TOTP code); "
        "false: start a new challenge before the next answer."
    )


class SetupOut(BaseModel):
    status: Literal["pending", "enrolled"]
    module: str
    setup_id: str | None = None
    prompt: PromptOut | None = None
    error: str = ""
    detail: str = ""
    backup_codes: list[str] = []
    message: str = ""


class RecoveryMethodOut(BaseModel):
    name: str = Field(description="The `method` to send to /recover")
    label: str = Field(description="The link or button that offers it")
    prompt: PromptOut = Field(description="What to ask: send the fields back as the `answer`")


class RecoveryMethodsOut(BaseModel):
    methods: list[RecoveryMethodOut] = Field(description="The backup code first, then the module's; empty when not enrolled")


class DisableOut(BaseModel):
    disabled: bool


def _prompt(prompt: Prompt) -> PromptOut:
    provisioning = prompt.provisioning
    ceremony = prompt.ceremony
    return PromptOut(
        message=prompt.message, instructions=prompt.instructions, redirect_url=prompt.redirect_url,
        fields=[FieldOut(**{k: getattr(f, k) for k in FieldOut.model_fields}) for f in prompt.fields],
        provisioning=ProvisioningOut(secret=provisioning.secret, uri=provisioning.uri, qr_svg=provisioning.qr_svg)
        if provisioning else None,
        ceremony=CeremonyOut(kind=ceremony.kind, options=json.loads(ceremony.options_json),
                             answer_field=ceremony.answer_field) if ceremony else None,
    )


def _verify_out(result: VerifyResult) -> VerifyOut:
    values = {field.name: getattr(result, field.name) for field in dataclasses.fields(result)}
    return VerifyOut(**{**values, "new_backup_codes": list(result.new_backup_codes)})


def _setup_out(step: SetupStarted | Enrolled) -> SetupOut:
    if isinstance(step, Enrolled):
        return SetupOut(status="enrolled", module=step.module, backup_codes=list(step.backup_codes), message=step.message)
    return SetupOut(status="pending", module=step.module, setup_id=step.setup_id, prompt=_prompt(step.prompt),
                    error=step.error, detail=step.detail)


def _host(request: Request) -> Host:
    return request.app.state.web.host


def _require_step_up(request: Request, user: User, step_up: StepUp | None, context: RequestContext | None) -> None:
    """Replacing or removing someone's second factor needs their current code first."""
    host = _host(request)
    if host.status(user) is None:
        return
    if step_up is None:
        raise ApiError(403, "step_up_required", "This person has a second factor: send step_up with their current "
                                                "code (answer) or a backup code (backup_code).")
    if step_up.backup_code is not None:
        result = host.recover(user, {"code": step_up.backup_code}, method="backup_code", context=context)
    else:
        result = host.verify(user, step_up.answer, challenge_id=step_up.challenge_id, context=context)
    host.record_event("step_up", actor="api", outcome="ok" if result.accepted else "fail", reason=result.reason,
                      subject=user, context=context)
    if not result.accepted:
        raise ApiError(403, "step_up_failed", result.message or "The second factor was not accepted.",
                       outcome=result.outcome.value, attempts_left=result.attempts_left,
                       locked_until=result.locked_until.isoformat() if result.locked_until else None)


# The login path's endpoints are async and take the Host call to the thread pool
# themselves: for a sync endpoint with a response model FastAPI makes two trips through
# the pool, one for the call and one to validate the response (a third of the HTTP
# layer's cost per verify).


@router.post("/login-state", response_model=LoginStateOut)
async def login_state(body: UserRequest, request: Request) -> LoginStateOut:
    """After the password: is a second factor needed (``challenge``), must the person set one
    up first (``must_set_up``, with the modules to choose from), or neither?"""
    state = await run_in_threadpool(_host(request).login_state, body.user.as_user())
    return LoginStateOut(step=state.step, module=state.module, choices=list(state.choices), message=state.message)


@router.post("/challenge", response_model=ChallengeOut,
             responses={409: {"model": ErrorResponse, "description": "not_enrolled"},
                        423: {"model": ErrorResponse, "description": "user_locked (with locked_until)"}})
async def challenge(body: UserRequest, request: Request) -> ChallengeOut:
    """Start the second factor: show ``prompt.fields``, or send the browser to ``prompt.redirect_url``."""
    try:
        started = await run_in_threadpool(_host(request).begin_challenge, body.user.as_user(),
                                          context=body.request_context())
    except UserLocked as locked:
        raise ApiError(423, "user_locked", str(locked), locked_until=locked.until.isoformat()) from None
    except ModuleUnavailable as error:
        raise ApiError(503, "module_unavailable", str(error)) from None
    except NotEnrolled as error:
        raise ApiError(409, "not_enrolled", str(error)) from None
    if isinstance(started, VerifyResult):
        return ChallengeOut(admitted=True, challenge_id=None, module=started.module, prompt=None, expires_at=None)
    return ChallengeOut(challenge_id=started.challenge_id, module=started.module, prompt=_prompt(started.prompt),
                        expires_at=started.expires_at)


@router.post("/verify", response_model=VerifyOut)
async def verify(body: VerifyRequest, request: Request) -> VerifyOut:
    """Judge the answer. A wrong answer is not an HTTP error: ``outcome`` says
    ``rejected`` (with ``attempts_left``) or ``locked`` (with ``locked_until``)."""
    result = await run_in_threadpool(_host(request).verify, body.user.as_user(), body.answer,
                                     challenge_id=body.challenge_id, context=body.request_context())
    return _verify_out(result)


@router.post("/setup", response_model=SetupOut, responses={404: {"model": ErrorResponse, "description": "unknown_module"}})
def begin_setup(body: SetupRequest, request: Request) -> SetupOut:
    """Start enrolling with a module enabled for the person's audience."""
    _require_step_up(request, body.user.as_user(), body.step_up, body.request_context())
    try:
        return _setup_out(_host(request).begin_setup(body.user.as_user(), body.module))
    except UnknownModule as error:
        raise ApiError(404, "unknown_module", str(error)) from None
    except ModuleUnavailable as error:
        raise ApiError(503, "module_unavailable", str(error)) from None


@router.post("/setup/continue", response_model=SetupOut,
             responses={410: {"model": ErrorResponse, "description": "setup_expired"}})
def continue_setup(body: SetupContinueRequest, request: Request) -> SetupOut:
    """Send the person's answer; a wrong one returns the same step with ``error`` set."""
    try:
        return _setup_out(_host(request).continue_setup(body.user.as_user(), body.setup_id, body.answer))
    except SetupExpired as error:
        raise ApiError(410, "setup_expired", str(error)) from None
    except ModuleUnavailable as error:
        raise ApiError(503, "module_unavailable", str(error)) from None


@router.post("/recovery-methods", response_model=RecoveryMethodsOut)
def recovery_methods(body: UserRequest, request: Request) -> RecoveryMethodsOut:
    """The ways back in the person has, each with the prompt to render (any module's)."""
    methods = _host(request).recovery_methods(body.user.as_user())
    return RecoveryMethodsOut(methods=[
        RecoveryMethodOut(name=m.name, label=m.label, prompt=_prompt(m.prompt)) for m in methods
    ])


@router.post("/recover", response_model=VerifyOut, responses={404: {"model": ErrorResponse, "description": "unknown_module"}})
async def recover(body: RecoverRequest, request: Request) -> VerifyOut:
    """Log in without the device: a backup code (the replacement is in ``new_backup_codes``;
    show it once)."""
    try:
        return _verify_out(await run_in_threadpool(_host(request).recover, body.user.as_user(), body.answer,
                                                   method=body.method, context=body.request_context()))
    except UnknownModule as error:
        raise ApiError(404, "unknown_module", str(error)) from None


@router.post("/disable", response_model=DisableOut)
def disable(body: DisableRequest, request: Request) -> DisableOut:
    """Remove the person's second factor; check their password (or your admin's right) first.

    The person's own removal needs ``step_up`` (their current code or a backup code)."""
    if not body.actor.startswith("admin:"):
        _require_step_up(request, body.user.as_user(), body.step_up, body.request_context())
    return DisableOut(disabled=_host(request).disable(body.user.as_user(), actor=body.actor))
