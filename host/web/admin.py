"""The admin area's own pages: Two-Factor Authentication settings, users, audit log.

Saving a module's settings (WHMCS "Activate" / "Configure") validates them with the
module's settings model, writes a candidate copy of ``secmod.toml``, loads a Host from it
and runs the module's ``activate``; only then does the candidate replace the file and
the new Host replace the running one. A bad change never reaches the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from secmod.hookspecs import Audience, User
from secmod.host import Host, SecmodError
from secmod.settings import ConfigError, SecmodSettings, load_settings

from .app import client_context, flash, render, require_csrf, web_of
from .config_form import describe_errors, describe_inputs, read_form, write_config
from .pages import ADMIN, admin_account

__all__ = ["router"]

log = logging.getLogger("secmod.web")

router = APIRouter(prefix="/admin", dependencies=[Depends(require_csrf)], include_in_schema=False)

# The labels are the settings model's titles (WHMCS's wording), kept in one place.
GLOBAL_SETTINGS = {key: SecmodSettings.model_fields[key].title or key for key in ("force_clients", "force_admins")}


def _page(request: Request, template: str, account: Any, *, status_code: int = 200, **context: Any) -> Response:
    return render(request, template, area=ADMIN, account=account, status_code=status_code, **context)


def _settings_context(request: Request) -> dict[str, Any]:
    """What the settings pages say about editing here and about the other hosts."""
    web = web_of(request)
    return {"editable": web.host.settings.web.settings_editable, "other_hosts": web.other_hosts(),
            "this_host": web.name}


def _refuse_if_read_only(request: Request) -> None:
    if not web_of(request).host.settings.web.settings_editable:
        raise HTTPException(403, "The settings are read-only on this host ([web] settings_editable = false): "
                                 "change secmod.toml where it is deployed, on every host.")


@router.get("")
def admin_home(request: Request) -> Response:
    admin_account(request)
    return RedirectResponse("/admin/2fa", status_code=303)


@router.get("/2fa")
def two_factor_settings(request: Request) -> Response:
    account = admin_account(request)
    host = web_of(request).host
    counts = host.enrolment_counts()
    modules = [
        {"name": name, "module": module, "settings": host.module_settings[name], "enrolled": counts.get(name, 0)}
        for name, module in sorted(host.modules.items(), key=lambda item: item[1].info.friendly_name)
    ]
    missing = {name: count for name, count in counts.items() if name not in host.modules}
    return _page(
        request, "admin/two_factor.html", account, modules=modules, broken=sorted(host.registry.broken.values(),
        key=lambda b: b.name), missing=missing, global_settings=GLOBAL_SETTINGS,
        force={"force_clients": host.settings.force_clients, "force_admins": host.settings.force_admins},
        **_settings_context(request),
    )


def _apply(request: Request, candidate: Path, *, activate: str | None = None) -> str:
    """Check a candidate config (load it; run ``activate``), then make it the real one.

    :returns: an error for the admin, or ``""`` when the change is live.
    """
    web = web_of(request)
    try:
        try:
            with Host(load_settings(candidate), **web.host_kwargs) as checked:
                if activate is not None:
                    checked.activate(activate)
        except (ConfigError, SecmodError) as error:
            return str(error).replace(str(candidate), web.config_file.name)
        os.replace(candidate, web.config_file)
    finally:
        with contextlib.suppress(FileNotFoundError):
            candidate.unlink()
    web.reload()
    return ""


@router.post("/2fa/global")
def save_global_settings(request: Request) -> Response:
    account = admin_account(request)
    _refuse_if_read_only(request)
    web = web_of(request)
    form = request.state.form
    with web.reload_lock:
        candidate = write_config(web.config_file, keyring=web.host.keyring,
                                 top_level={key: key in form for key in GLOBAL_SETTINGS})
        error = _apply(request, candidate)
    if not error:
        web.host.record_event("settings", actor=f"admin:{account.id}", reason="global", outcome="ok",
                              detail=", ".join(f"{key}={key in form}" for key in GLOBAL_SETTINGS),
                              context=client_context(request))
    flash(request, error or "Global Two-Factor Authentication Settings saved.", "error" if error else "success")
    return RedirectResponse("/admin/2fa", status_code=303)


def _module_or_404(request: Request, name: str) -> Any:
    module = web_of(request).host.modules.get(name)
    if module is None:
        raise HTTPException(404, f"No security module named {name!r} is installed.")
    return module


def _module_page(request: Request, account: Any, name: str, *, error: str = "", status_code: int = 200,
                 form: Any = None) -> Response:
    host = web_of(request).host
    module = _module_or_404(request, name)
    current = host.module_settings[name]
    base_url = host.settings.web.base_url.rstrip("/")
    inputs = describe_inputs(module.info.settings_model, current,
                             places={"{web.base_url}": base_url, "{base_url}": base_url})
    secrets_dropped = ""
    if form is not None:  # show what was sent back after an error (never a secret)
        typed = [item.label for item in inputs if item.kind == "secret" and str(form.get(item.name, "")).strip()]
        if typed:
            secrets_dropped = (f"{' and '.join(typed)} {'was' if len(typed) == 1 else 'were'} not kept: "
                               "type it again. Secrets are never sent back to the browser.")
        inputs = [
            item if item.kind in ("secret", "unsupported") else dataclasses.replace(
                item, value=("on" if item.name in form else "") if item.kind == "checkbox" else str(form.get(item.name, ""))
            )
            for item in inputs
        ]
    status = {key: (key in form) if form is not None else getattr(current, key) for key in ("clients", "admins")}
    return _page(request, "admin/module.html", account, module=module, inputs=inputs, status=status,
                 error=error, status_code=status_code, redirect_url=host.callback_url(module.name),
                 secrets_dropped=secrets_dropped, **_settings_context(request))


@router.get("/2fa/{name}")
def module_settings(request: Request, name: str) -> Response:
    return _module_page(request, admin_account(request), name)


@router.post("/2fa/{name}")
def save_module_settings(request: Request, name: str) -> Response:
    account = admin_account(request)
    _refuse_if_read_only(request)
    web = web_of(request)
    module = _module_or_404(request, name)
    form = request.state.form
    model = module.info.settings_model
    with web.reload_lock:
        raw, new_secrets = read_form(model, web.host.module_settings[name], form)
        try:
            validated = model.model_validate(raw, context=web.host.settings.module_settings_context)
        except ValidationError as invalid:
            error = describe_errors(model, invalid)
            return _module_page(request, account, name, error=error, status_code=400, form=form)
        candidate = write_config(web.config_file, keyring=web.host.keyring, module=name, validated=validated,
                                 raw=raw, new_secrets=new_secrets)
        on = validated.clients or validated.admins
        error = _apply(request, candidate, activate=name if on else None)
    if error:
        return _module_page(request, account, name, error=error, status_code=400, form=form)
    state = "activated" if on else "deactivated"
    web.host.record_event("settings", actor=f"admin:{account.id}", module=name, reason=state, outcome="ok",
                          detail=f"clients={validated.clients}, admins={validated.admins}",
                          context=client_context(request))
    flash(request, f"{module.info.friendly_name} saved and {state}.", "success")
    return RedirectResponse("/admin/2fa", status_code=303)


@router.get("/users")
def users(request: Request) -> Response:
    account = admin_account(request)
    web = web_of(request)
    people = {
        audience: [(person, web.host.status(person.as_user())) for person in web.accounts.list(audience)]
        for audience in (Audience.CLIENT, Audience.ADMIN)
    }
    return _page(request, "admin/users.html", account, clients=people[Audience.CLIENT], admins=people[Audience.ADMIN])


def _client_or_404(request: Request, client_id: int) -> Any:
    client = web_of(request).accounts.get(client_id, Audience.CLIENT)
    if client is None:
        raise HTTPException(404, "No such client.")
    return client


@router.get("/users/{client_id}/disable-2fa")
def confirm_disable_client_2fa(request: Request, client_id: int) -> Response:
    """The users page's button only asks: what disabling does, and a confirm button."""
    account = admin_account(request)
    client = _client_or_404(request, client_id)
    return _page(request, "admin/disable_2fa.html", account, client=client,
                 status=web_of(request).host.status(client.as_user()))


@router.post("/users/{client_id}/disable-2fa")
def disable_client_2fa(request: Request, client_id: int) -> Response:
    """WHMCS lets an admin turn a client's 2FA off (never on); audited as this admin."""
    account = admin_account(request)
    web = web_of(request)
    client = _client_or_404(request, client_id)
    user: User = client.as_user()
    if request.state.form.get("confirm") != "yes":
        return _page(request, "admin/disable_2fa.html", account, client=client, status=web.host.status(user),
                     status_code=400, error="Nothing was changed: confirm to disable.")
    if web.host.disable(user, actor=f"admin:{account.id}"):
        flash(request, f"Two-Factor Authentication has been disabled for {client.email}.", "success")
    else:
        flash(request, f"{client.email} does not have Two-Factor Authentication enabled.", "info")
    return RedirectResponse("/admin/users", status_code=303)


@router.get("/audit")
def audit(request: Request) -> Response:
    account = admin_account(request)
    web = web_of(request)
    events = web.host.audit_events(limit=200)
    emails = {
        (audience.value, str(person.id)): person.email
        for audience in (Audience.CLIENT, Audience.ADMIN) for person in web.accounts.list(audience)
    }
    return _page(request, "admin/audit.html", account, events=events, emails=emails)

