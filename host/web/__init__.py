"""The reference web host (``secmod serve``): client area, admin area and JSON API.

``create_app(config)`` builds the FastAPI application; :func:`serve` runs it with uvicorn
after making sure there is an administrator to log in with.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path

from secmod.hookspecs import Audience

from .accounts import AccountStore
from .app import create_app

__all__ = ["HideQueryStrings", "create_app", "ensure_first_admin", "serve"]

DEFAULT_ADMIN_EMAIL = "admin@localhost"


def ensure_first_admin(
    accounts: AccountStore, *, environ: Mapping[str, str] = os.environ, echo: Callable[[str], None] = print
) -> bool:
    """Create the first administrator when there is none; returns whether one was made.

    The password comes from ``SECMOD_ADMIN_PASSWORD``, else it is generated and printed
    once (it is stored only as an argon2 hash). ``SECMOD_ADMIN_EMAIL`` names the login.
    """
    if accounts.count(Audience.ADMIN):
        return False
    email = environ.get("SECMOD_ADMIN_EMAIL") or DEFAULT_ADMIN_EMAIL
    given = environ.get("SECMOD_ADMIN_PASSWORD")
    password = given or secrets.token_urlsafe(12)
    accounts.create(Audience.ADMIN, email, password, name="Administrator")
    if given:
        echo(f"Created the first administrator {email} with the password from SECMOD_ADMIN_PASSWORD.")
    else:
        echo(f"Created the first administrator {email}; one-time password (shown only now): {password}")
    return True


class HideQueryStrings(logging.Filter):
    """Keep query strings out of uvicorn's access log.

    Duo sends the browser back with its one-time ``duo_code`` and ``state`` in the query
    of ``/login/duo/callback``; a log line must not carry them.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0] + "?[query hidden]", *args[3:])
        return True


def serve(config: str | Path | None = None, *, host: str | None = None, port: int | None = None) -> None:
    """Run the web host with uvicorn (``secmod serve``)."""
    import uvicorn

    app = create_app(config)
    web = app.state.web
    settings = web.host.settings
    ensure_first_admin(web.accounts)
    bind_host = host or settings.web.host
    bind_port = port or settings.web.port
    listening = f"http://{bind_host}:{bind_port}"
    # People must browse the public address: Duo comes back to it, and security keys
    # are bound to it (a key registered at localhost does not answer at 127.0.0.1).
    public = settings.web.base_url.rstrip("/")
    print(f"secmod web host: {public}/login (clients), {public}/admin (administrators)")
    if public != listening:
        print(f"listening on {listening}")
    if not settings.web.api_token:
        print("JSON API off: set [web] api_token to turn /api/v1 on")
    server_config = uvicorn.Config(app, host=bind_host, port=bind_port, log_level="info")
    # uvicorn sets its loggers up in Config(); the filter goes on after that.
    logging.getLogger("uvicorn.access").addFilter(HideQueryStrings())
    uvicorn.Server(server_config).run()
