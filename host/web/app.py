"""The FastAPI application: state, sessions, CSRF, security headers and error pages.

The pages are in :mod:`.pages` (client and admin login, 2FA, security settings),
:mod:`.admin` (module configuration, users, audit) and :mod:`.api` (JSON for host
applications in other languages).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, Signer
from secmod.hookspecs import messages
from secmod.host import Host, RequestContext, StoreUnavailable
from secmod.host.errors import ConfigError
from secmod.host.sealing import SEALED_PREFIX, SealError
from secmod.host.fleet import (
    HostFingerprint,
    disagreeing_hosts,
    host_name,
    record_fingerprint,
    settings_fingerprint,
)
from secmod.host.retention import purge
from secmod.host.storage import open_engine
from secmod.settings import SecmodSettings, config_path, load_settings
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .assets import asset_router
from .accounts import AccountStore, Session, SessionStore, new_csrf_token, stored_secret
from .observability import HealthCheck, MeteredHost, health_endpoint, metrics_endpoint

__all__ = ["WebHost", "client_context", "create_app"]

log = logging.getLogger("secmod.web")

HERE = Path(__file__).parent
SESSION_COOKIE = "secmod_session"
CSRF_COOKIE = "secmod_csrf"  # the form token of a browser with no server-side session
HOST_NAME_ENV = "SECMOD_HOST_NAME"
IDLE_SECONDS = 8 * 3600
REMEMBER_SECONDS = 30 * 24 * 3600

# Scripts only from this site's own files (static/ceremony.js runs security-key
# ceremonies), never inline. There is no form-action directive because Chromium
# applies it to the redirects that follow a form post, and the Duo login leaves for
# Duo's own origin that way.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; "
    "base-uri 'none'; frame-ancestors 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def client_context(request: Request) -> RequestContext:
    """The browser's address and User-Agent, for secmod's per-address throttle and audit.

    The address is the TCP peer's: behind a reverse proxy, run uvicorn with
    ``--proxy-headers`` and ``--forwarded-allow-ips`` so that this is the client's.
    """
    return RequestContext(client_ip=request.client.host if request.client else "",
                          user_agent=request.headers.get("user-agent", ""))


class Redirect(Exception):
    """Stop here and send the browser to ``url`` (raised by the area guards)."""

    def __init__(self, url: str) -> None:
        self.url = url


class CsrfFailure(Exception):
    """A form post without this session's CSRF token."""


class WebHost:
    """What every request shares: the (swappable) Host, the accounts and the sessions."""

    def __init__(self, config: str | Path | None, *, host_kwargs: dict[str, Any] | None = None) -> None:
        # Where admin changes are written; until the first one, a missing file means the
        # embedded defaults (unless a path was named explicitly: then it must exist).
        self.config_file = config_path(config)
        self._config_arg = config
        self.host_kwargs = dict(host_kwargs or {})
        # How this host is named among those sharing the database (`secmod serve` sets it).
        self.name = os.environ.get(HOST_NAME_ENV) or host_name()
        self._host = self._build_host()
        self.reload_lock = threading.Lock()
        settings = self._host.settings
        self.accounts = accounts_store(settings, clock=lambda: self._host.clock())
        self.accounts_engine = self.accounts.engine
        keyring = self._host.keyring
        self.sessions = SessionStore(self.accounts_engine, keyring=keyring, idle_seconds=IDLE_SECONDS,
                                     remember_seconds=REMEMBER_SECONDS)
        # The cookie holds a random token, signed so that a forged one is refused before
        # any database lookup; the key is [web] session_secret, else one made and kept.
        secret = self.web_secret("session_secret") or stored_secret(self.accounts_engine, "session_cookie", keyring)
        self.cookie_signer = Signer(secret, salt="secmod.web.session")
        self.csrf_signer = Signer(secret, salt="secmod.web.csrf")
        self.health = HealthCheck()

    def _build_host(self) -> Host:
        file = self.config_file if self.config_file.exists() else self._config_arg
        host = MeteredHost(load_settings(file), **self.host_kwargs)
        self.fingerprint = settings_fingerprint(host.settings, host.module_settings)
        record_fingerprint(host.engine, self.name, self.fingerprint)
        return host

    @property
    def host(self) -> Host:
        return self._host

    def web_secret(self, key: str) -> str | None:
        """``[web] api_token`` or ``session_secret``, unsealed when written sealed
        (``secmod seal web KEY --write``)."""
        value: str | None = getattr(self._host.settings.web, key)
        if value and value.startswith(SEALED_PREFIX):
            try:
                return self._host.keyring.unseal_setting("web", key, value)
            except SealError as error:
                raise ConfigError(f"{self._host.settings.config_file}: [web] {key}: {error}") from None
        return value

    def reload(self) -> None:
        """Read the config file again and swap the new Host in; requests under way finish
        on the old one."""
        fresh = self._build_host()
        previous, self._host = self._host, fresh
        previous.close()

    def other_hosts(self) -> list[HostFingerprint]:
        """Hosts on this database whose settings differ from this one's."""
        return disagreeing_hosts(self._host.engine, self.fingerprint)

    def server_time(self) -> datetime:
        return datetime.fromtimestamp(self._host.clock(), UTC)

    def close(self) -> None:
        self._host.close()
        self.accounts_engine.dispose()


def accounts_store(settings: SecmodSettings, *, clock: Callable[[], float] = time.time) -> AccountStore:
    """The web host's accounts, where ``[web] accounts_database_url`` (or ``database_url``) says."""
    accounts_url = settings.web.accounts_database_url or settings.database_url
    if accounts_url.startswith("sqlite:///") and not accounts_url.startswith("sqlite:////"):
        accounts_url = "sqlite:///" + str(settings.resolve(accounts_url[len("sqlite:///"):]))
    # The web host's tables only: secmod's migrations never touch them.
    engine = open_engine(accounts_url, migrate=False, timeout_seconds=settings.database_timeout_seconds)
    return AccountStore(engine, clock=clock,
                        window_seconds=settings.throttle.lockout_minutes * 60)


templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.globals["messages"] = messages
templates.env.globals["utc"] = lambda value: value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def web_of(request: Request) -> WebHost:
    return request.app.state.web


def session_of(request: Request) -> Session:
    return request.state.session


def flash(request: Request, text: str, kind: str = "info") -> None:
    """A message for the next page shown (after a redirect)."""
    session = session_of(request)
    session["flash"] = [*session.get("flash", []), [kind, text]]


def render(request: Request, template: str, *, status_code: int = 200, **context: Any) -> Response:
    session = session_of(request)
    messages = session.pop("flash", []) if session.get("flash") else []
    web = web_of(request)
    return templates.TemplateResponse(
        request, template,
        {"csrf_token": session.get("csrf", ""), "flashes": messages, "server_time": web.server_time(), **context},
        status_code=status_code,
    )


async def require_csrf(request: Request) -> None:
    """Every form post carries the session's token (dependency of every HTML router).

    The parsed form is left in ``request.state.form`` for the page's (sync) handler.
    """
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    form = await request.form()
    request.state.form = form
    expected = session_of(request).get("csrf")
    sent = form.get("csrf_token")
    if not expected or not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfFailure()


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


# Paths that never touch a browser session: no cookie is read and no session row loaded
# (so they also answer while the database is away).
SESSIONLESS_PREFIXES = ("/api/", "/static/", "/openapi.json", "/metrics", "/healthz")


class SessionsAndHeaders:
    """Loads the browser session, saves it when changed, adds the security headers.

    A pure ASGI middleware: Starlette's ``@app.middleware("http")`` runs every request
    through a second task and memory streams, which cost more than a verify itself.
    """

    def __init__(self, app: ASGIApp, *, web: WebHost) -> None:
        self.app = app
        self.web = web

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        static = path.startswith("/static/")
        session: Session | None = None
        new_anonymous_csrf = False
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if session is not None:
                    for value in await self._cookie_headers(session, new_anonymous_csrf=new_anonymous_csrf):
                        headers.append("set-cookie", value)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if not static:
                    # Pages carry codes, QR secrets and names: never keep them in a cache.
                    headers.setdefault("Cache-Control", "no-store")
                started = True
            await send(message)

        try:
            if not path.startswith(SESSIONLESS_PREFIXES):
                session = await run_in_threadpool(
                    self.web.sessions.load, _unsign(self.web.cookie_signer, _cookie(scope, SESSION_COOKIE))
                )
                if session.token is None:
                    # Nobody is logged in: nothing worth a database row (anonymous views would
                    # otherwise fill the table). The form token lives in its own signed cookie.
                    planted = _unsign(self.web.csrf_signer, _cookie(scope, CSRF_COOKIE))
                    new_anonymous_csrf = planted is None
                    session.data["csrf"] = planted or new_csrf_token()
                elif not session.get("csrf"):
                    session["csrf"] = new_csrf_token()
                scope.setdefault("state", {})["session"] = session
            await self.app(scope, receive, send_with_headers)
        except DATABASE_DOWN as error:
            # Loading or saving the session failed (the pages' own failures are answered by
            # the exception handlers): the same clear 503, if nothing was sent yet.
            if started:
                raise
            session = None
            await _store_unavailable(Request(scope), error)(scope, receive, send_with_headers)

    async def _cookie_headers(self, session: Session, *, new_anonymous_csrf: bool) -> list[str]:
        web = self.web
        secure = web.host.settings.web.secure_cookies
        carrier = Response()
        if session.token is None and not session.changed and new_anonymous_csrf:
            carrier.set_cookie(CSRF_COOKIE, web.csrf_signer.sign(session["csrf"]).decode(), path="/",
                               httponly=True, samesite="lax", secure=secure)
        if session.ended:
            # Logged out: the next anonymous form gets a token never seen before.
            carrier.delete_cookie(CSRF_COOKIE, path="/", secure=secure, httponly=True, samesite="lax")
        if session.changed:
            token = await run_in_threadpool(web.sessions.save, session)
            if token is None:
                carrier.delete_cookie(SESSION_COOKIE, path="/", secure=secure, httponly=True,
                                      samesite="lax")
            else:
                carrier.set_cookie(
                    SESSION_COOKIE, web.cookie_signer.sign(token).decode(), path="/", httponly=True,
                    samesite="lax", secure=secure,
                    # A browser-session cookie until "remember me" is honoured after the second factor.
                    max_age=REMEMBER_SECONDS if session.persistent else None,
                )
        return carrier.headers.getlist("set-cookie")


def _cookie(scope: Scope, name: str) -> str | None:
    for key, value in scope["headers"]:
        if key == b"cookie":
            return cookie_parser(value.decode("latin-1")).get(name)
    return None


def create_app(config: str | Path | None = None, *, host_kwargs: dict[str, Any] | None = None) -> FastAPI:
    """The reference web host for ``config`` (``secmod.toml``; embedded defaults when absent).

    :param host_kwargs: passed to every :class:`~secmod.host.Host` built, the first and
        each one after the admin saves settings (tests pass a clock or extra modules).
    """
    from . import admin, api, pages

    web = WebHost(config, host_kwargs=host_kwargs)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        purging = asyncio.create_task(_purge_periodically(web))
        yield
        purging.cancel()
        web.close()

    app = FastAPI(
        lifespan=lifespan,
        title="secmod web host",
        summary="Two-factor authentication for host applications in any language",
        version="1",
        docs_url=None,  # the interactive docs load scripts from elsewhere; /openapi.json is the reference
        redoc_url=None,
    )
    app.state.web = web
    app.include_router(asset_router(HERE / "static"))
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(admin.router)

    app.add_middleware(SessionsAndHeaders, web=web)
    app.add_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
    app.add_route("/healthz", health_endpoint, methods=["GET"], include_in_schema=False)

    @app.exception_handler(StoreUnavailable)
    @app.exception_handler(sa.exc.OperationalError)
    @app.exception_handler(sa.exc.InterfaceError)
    @app.exception_handler(sa.exc.TimeoutError)
    async def store_unavailable(request: Request, error: Exception) -> Response:
        return _store_unavailable(request, error)

    @app.exception_handler(api.ApiError)
    async def api_error(request: Request, error: api.ApiError) -> Response:
        return api.error_response(error.status, error.code, error.message, **error.extra)

    @app.exception_handler(Redirect)
    async def redirect(request: Request, error: Redirect) -> Response:
        return RedirectResponse(error.url, status_code=303)

    def area_of(request: Request) -> Any:
        return pages.ADMIN if request.url.path.startswith("/admin") else pages.CLIENT

    @app.exception_handler(CsrfFailure)
    async def csrf_failure(request: Request, error: CsrfFailure) -> Response:
        return render(
            request, "error.html", status_code=403, title="Form expired", area=area_of(request),
            message="This form has expired or was not sent from this site. Go back, reload the page and try again.",
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        if _is_api(request) or not hasattr(request.state, "session"):
            return api.error_response(error.status_code, api.HTTP_CODES.get(error.status_code, "http_error"), str(error.detail))
        title = "Not found" if error.status_code == 404 else "Error"
        return render(request, "error.html", status_code=error.status_code, title=title, area=area_of(request),
                      message=str(error.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'][1:]) or 'body'}: {item['msg']}" for item in error.errors()
        )
        return api.error_response(422, "invalid_request", problems or "The request is not valid.")

    return app


async def _purge_periodically(web: WebHost) -> None:
    """Each worker purges now and then (host/retention.py): batches, so logins never wait.

    The first run waits at least half an interval, spread at random, so that workers
    and hosts started together do not all purge at the same moment.
    """
    delay = random.uniform(0.5, 1.0)  # noqa: S311 - spreading work, not a secret
    while True:
        minutes = web.host.settings.retention.purge_every_minutes
        await asyncio.sleep(max(minutes, 1) * 60 * delay)
        delay = 1.0
        if not minutes:
            continue
        host = web.host
        try:
            purged = await run_in_threadpool(purge, host.engine, host.settings.retention, now=host.clock())
        except Exception as error:  # noqa: BLE001 - a failed purge is retried next time
            log.warning("purge failed (%s); retrying in %d minutes", type(error).__name__, minutes)
            continue
        if purged.total:
            log.info("purged %d audit events, %d expired pending steps, %d used backup codes",
                     purged.audit_events, purged.pending_steps, purged.used_backup_codes)


# The database is down or stalled: secmod's (the Host raises StoreUnavailable) or the web
# host's own accounts and sessions (SQLAlchemy's errors, or its pool's wait running out).
DATABASE_DOWN = (StoreUnavailable, sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)
UNAVAILABLE_TITLE = "Temporarily unavailable"
UNAVAILABLE_MESSAGE = (
    "The service is temporarily unavailable, so nobody can log in right now. Please try again in a few minutes."
)
RETRY_AFTER_SECONDS = "30"


def _store_unavailable(request: Request, error: BaseException) -> Response:
    """A 503 that says what is going on: a page, or the API's JSON error. Never a traceback."""
    log.warning("database unavailable (%s): answered %s %s with 503", type(error).__name__, request.method,
                request.url.path)
    headers = {"Retry-After": RETRY_AFTER_SECONDS}
    if _is_api(request):
        response: Response = JSONResponse(
            {"error": {"code": "store_unavailable", "message": UNAVAILABLE_MESSAGE}}, status_code=503, headers=headers
        )
        return response
    from .pages import ADMIN, CLIENT

    area = ADMIN if request.url.path.startswith("/admin") else CLIENT
    # Rendered without the session (it may be what could not be loaded): no account, no form.
    return templates.TemplateResponse(
        request, "error.html",
        {"csrf_token": "", "flashes": [], "server_time": datetime.now(UTC), "area": area, "account": None,
         "title": UNAVAILABLE_TITLE, "message": UNAVAILABLE_MESSAGE},
        status_code=503, headers=headers,
    )


def _unsign(signer: Signer, cookie: str | None) -> str | None:
    if not cookie:
        return None
    try:
        return signer.unsign(cookie).decode()
    except (BadSignature, UnicodeDecodeError):
        return None

