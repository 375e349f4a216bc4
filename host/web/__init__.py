"""The reference web host (``secmod serve``): client area, admin area and JSON API.

``create_app(config)`` builds the FastAPI application; :func:`serve` runs it with uvicorn
after making sure there is an administrator to log in with.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from secmod.hookspecs import Audience
from secmod.host.fleet import host_name
from secmod.settings import config_path, load_settings

from .accounts import AccountStore
from .app import HOST_NAME_ENV, create_app
from .logs import LogFormat, log_config
from .observability import MULTIPROC_ENV

__all__ = ["HideQueryStrings", "app_from_environment", "create_app", "ensure_first_admin", "serve"]

DEFAULT_ADMIN_EMAIL = "admin@localhost"


def ensure_first_admin(
    accounts: AccountStore, *, environ: Mapping[str, str] = os.environ, echo: Callable[[str], None] = print
) -> bool:
    """Create the first administrator when there is none; returns whether one was made.

    The password comes from ``SECMOD_ADMIN_PASSWORD``, else it is generated and printed
    once (it is stored only as an argon2 hash). Either way it is one-time: the first
    login must replace it. ``SECMOD_ADMIN_EMAIL`` names the login.
    """
    if accounts.count(Audience.ADMIN):
        return False
    email = environ.get("SECMOD_ADMIN_EMAIL") or DEFAULT_ADMIN_EMAIL
    given = environ.get("SECMOD_ADMIN_PASSWORD")
    password = given or secrets.token_urlsafe(12)
    accounts.create(Audience.ADMIN, email, password, name="Administrator", one_time=True)
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


def app_from_environment() -> FastAPI:
    """The app of one ``secmod serve --workers N`` worker (config from ``$SECMOD_CONFIG``)."""
    return create_app(None)


def _metrics_directory(workers: int) -> str | None:
    """Make prometheus-client count across worker processes; returns a folder we made.

    An operator's own ``PROMETHEUS_MULTIPROC_DIR`` is used as given, emptied of the
    previous run's files (prometheus-client's rule: clean it before the server starts).
    """
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        return None
    if workers == 1:
        return None
    made = tempfile.mkdtemp(prefix="secmod-metrics-")
    os.environ[MULTIPROC_ENV] = made
    return made


def serve(
    config: str | Path | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    log_format: LogFormat | None = None,
    access_log: bool | None = None,
) -> None:
    """Run the web host with uvicorn (``secmod serve``); the options default to ``[web]``.

    Several workers are uvicorn's own processes under its supervisor, which replaces a
    worker that dies. They share nothing but the database, exactly as several hosts do.
    """
    import uvicorn

    path = config_path(config)
    # The name this host's settings fingerprint is kept under (host/fleet.py); workers inherit it.
    os.environ.setdefault(HOST_NAME_ENV, host_name(port or load_settings(config).web.port))
    app = create_app(config)  # migrates the database once, before any worker starts
    web = app.state.web
    settings = web.host.settings
    ensure_first_admin(web.accounts)
    bind_host = host or settings.web.host
    bind_port = port or settings.web.port
    workers = workers or settings.web.workers
    listening = f"http://{bind_host}:{bind_port}"
    # People must browse the public address: Duo comes back to it, and security keys
    # are bound to it (a key registered at localhost does not answer at 127.0.0.1).
    public = settings.web.base_url.rstrip("/")
    print(f"secmod web host: {public}/login (clients), {public}/admin (administrators)")
    if public != listening:
        print(f"listening on {listening}")
    if not web.web_secret("api_token"):
        print("JSON API off: set [web] api_token to turn /api/v1 on")
    if workers > 1:
        print(f"{workers} worker processes")
    options: dict[str, Any] = {
        "host": bind_host, "port": bind_port, "log_level": "info",
        "log_config": log_config(log_format or settings.web.log_format),
        "access_log": settings.web.access_log if access_log is None else access_log,
    }
    made_directory = _metrics_directory(workers)
    try:
        if workers == 1:
            uvicorn.Server(uvicorn.Config(app, **options)).run()
        else:
            web.close()
            # The workers read the same file; a path relative to here means nothing to them.
            os.environ["SECMOD_CONFIG"] = str(path)
            uvicorn.run(f"{__name__}:app_from_environment", factory=True, workers=workers, **options)
    finally:
        if made_directory:
            shutil.rmtree(made_directory, ignore_errors=True)
