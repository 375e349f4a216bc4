"""The FastAPI application: state, sessions, CSRF, security headers and error pages.

The pages are in :mod:`.pages` (client and admin login, 2FA, security settings),
:mod:`.admin` (module configuration, users, audit) and :mod:`.api` (JSON for host
applications in other languages).
"""

from __future__ import annotations

import contextlib
import hmac
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, Signer
from secmod.hookspecs import messages
from secmod.host import Host, RequestContext
from secmod.host.storage import open_engine
from secmod.settings import config_path, load_settings
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .accounts import AccountStore, Session, SessionStore, stored_secret

__all__ = ["WebHost", "client_context", "create_app"]

HERE = Path(__file__).parent
SESSION_COOKIE = "secmod_session"
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
        self._host = self._build_host()
        self.reload_lock = threading.Lock()
        settings = self._host.settings
        accounts_url = settings.web.accounts_database_url or settings.database_url
        if accounts_url.startswith("sqlite:///") and not accounts_url.startswith("sqlite:////"):
            accounts_url = "sqlite:///" + str(settings.resolve(accounts_url[len("sqlite:///"):]))
        # The web host's tables only: secmod's migrations never touch them.
        self.accounts_engine = open_engine(accounts_url, migrate=False)
        self.accounts = AccountStore(self.accounts_engine)
        self.sessions = SessionStore(self.accounts_engine, idle_seconds=IDLE_SECONDS, remember_seconds=REMEMBER_SECONDS)
        # The cookie holds a random token, signed so that a forged one is refused before
        # any database lookup; the key is [web] session_secret, else one made and kept.
        secret = settings.web.session_secret or stored_secret(self.accounts_engine, "session_cookie")
        self.cookie_signer = Signer(secret, salt="secmod.web.session")

    def _build_host(self) -> Host:
        return Host(load_settings(self.config_file if self.config_file.exists() else self._config_arg), **self.host_kwargs)

    @property
    def host(self) -> Host:
        return self._host

    def reload(self) -> None:
        """Read the config file again and swap the new Host in; requests under way finish
        on the old one."""
        fresh = self._build_host()
        previous, self._host = self._host, fresh
        previous.close()

    def server_time(self) -> datetime:
        return datetime.fromtimestamp(self._host.clock(), UTC)

    def close(self) -> None:
        self._host.close()
        self.accounts_engine.dispose()


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


def create_app(config: str | Path | None = None, *, host_kwargs: dict[str, Any] | None = None) -> FastAPI:
    """The reference web host for ``config`` (``secmod.toml``; embedded defaults when absent).

    :param host_kwargs: passed to every :class:`~secmod.host.Host` built, the first and
        each one after the admin saves settings (tests pass a clock or extra modules).
    """
    from . import admin, api, pages

    web = WebHost(config, host_kwargs=host_kwargs)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
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
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(admin.router)

    @app.middleware("http")
    async def sessions_and_headers(request: Request, call_next: Callable[[Request], Any]) -> Response:
        uses_session = not (_is_api(request) or request.url.path.startswith("/static/"))
        session: Session | None = None
        if uses_session:
            session = await run_in_threadpool(web.sessions.load, _unsign(web, request.cookies.get(SESSION_COOKIE)))
            if not session.get("csrf"):
                session["csrf"] = secrets.token_urlsafe(32)
            request.state.session = session
        response: Response = await call_next(request)
        if session is not None and session.changed:
            token = await run_in_threadpool(web.sessions.save, session)
            secure = web.host.settings.web.secure_cookies
            if token is None:
                response.delete_cookie(SESSION_COOKIE, path="/", secure=secure, httponly=True, samesite="lax")
            else:
                response.set_cookie(
                    SESSION_COOKIE, web.cookie_signer.sign(token).decode(), path="/", httponly=True,
                    samesite="lax", secure=secure,
                    # A browser-session cookie until "remember me" is honoured after the second factor.
                    max_age=REMEMBER_SECONDS if session.persistent else None,
                )
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if not request.url.path.startswith("/static/"):
            # Pages carry codes, QR secrets and names: never keep them in a cache.
            response.headers.setdefault("Cache-Control", "no-store")
        return response

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


def _unsign(web: WebHost, cookie: str | None) -> str | None:
    if not cookie:
        return None
    try:
        return web.cookie_signer.unsign(cookie).decode()
    except BadSignature:
        return None

