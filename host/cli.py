"""The ``secmod`` command line: operate a host from a terminal.

Every command reads the same ``secmod.toml`` (``--config`` or ``$SECMOD_CONFIG``). Errors
are one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from secmod.hookspecs import BACKUP_CODE_METHOD, Audience, Prompt, User
from secmod.settings import ConfigError, config_path, load_settings, set_module_setting

from .errors import SecmodError, StoreUnavailable
from .outcomes import Enrolled, LoginStep, Outcome, VerifyResult
from .sealing import KeyRing, SealError, reseal_settings

app = typer.Typer(
    name="secmod",
    help="Two-factor authentication security modules, WHMCS-style.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain help text: rich markup would swallow "[web]" and the other section names.
    rich_markup_mode=None,
)
keys_app = typer.Typer(help="Manage the sealing keys.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(keys_app, name="keys")

admin_app = typer.Typer(help="Manage the reference web host's administrators.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")

F = TypeVar("F", bound=Callable[..., Any])
_state: dict[str, Any] = {"config": None}

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", envvar="SECMOD_CONFIG", help="secmod.toml to use.", show_default="./secmod.toml"),
]
AdminOption = Annotated[bool, typer.Option("--admin", help="The user is an administrator (default: a client).")]
EmailOption = Annotated[str | None, typer.Option("--email", help="The user's email (default: USER if it is one).")]


class Failure(Exception):
    """A one-line error for the terminal, with its exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _one_line_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Failure as error:
            typer.secho(f"error: {error}", err=True, fg="red")
            raise typer.Exit(error.code) from None
        except StoreUnavailable as error:
            typer.secho(f"error: {config_path(_state['config'])}: database_url: {error}", err=True, fg="red")
            raise typer.Exit(2) from None
        except (ConfigError, SecmodError, SealError) as error:
            typer.secho(f"error: {error}", err=True, fg="red")
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def _main(config: ConfigOption = None) -> None:
    _state["config"] = config
    # Warnings (a broken optional module) as one plain line each, like the errors.
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", force=True)


def _host():
    from .core import Host

    return Host.from_config(_state["config"])


def _user(user_id: str, admin: bool, email: str | None) -> User:
    return User(
        id=user_id,
        audience=Audience.ADMIN if admin else Audience.CLIENT,
        email=email or (user_id if "@" in user_id else ""),
    )


def _print_result(result: VerifyResult) -> None:
    colour = {Outcome.ACCEPTED: "green", Outcome.REJECTED: "yellow", Outcome.LOCKED: "red"}[result.outcome]
    typer.secho(f"{result.outcome.value}: {result.message or 'Second factor accepted.'}", fg=colour)
    if result.detail:
        typer.echo(result.detail)
    for code in result.new_backup_codes:
        typer.echo(f"Your New Backup Code is: {code}")


def _refuse_browser_ceremony(module: str, prompt: Prompt) -> None:
    if prompt.ceremony is not None:
        raise Failure(
            f"module {module!r} needs a browser: its {prompt.ceremony.kind} ceremony (a security "
            "key or passkey) runs only in a web page. Use `secmod serve`, or drive it through the "
            "JSON API.",
            code=2,
        )


def _exit_for(result: VerifyResult) -> None:
    if result.outcome is not Outcome.ACCEPTED:
        raise typer.Exit(2 if result.outcome is Outcome.LOCKED else 1)


@app.command()
@_one_line_errors
def modules() -> None:
    """List installed modules: distribution, version, who they are on for, users enrolled."""
    host = _host()
    counts = host.enrolment_counts()
    # Friendly names run long ("Security Key / Passkey"): the column fits the longest.
    wide = max([20, *(len(module.info.friendly_name) for module in host.modules.values())])
    typer.echo(f"{'module':<10} {'friendly name':<{wide}} {'distribution':<18} {'version':<8} "
               f"{'clients':<8} {'admins':<7} enrolled")
    for name, module in sorted(host.modules.items()):
        settings = host.module_settings[name]
        typer.echo(
            f"{name:<10} {module.info.friendly_name:<{wide}} {module.distribution:<18} {module.version:<8} "
            f"{'on' if settings.clients else 'off':<8} {'on' if settings.admins else 'off':<7} {counts.get(name, 0)}"
        )
    for name, broken in sorted(host.registry.broken.items()):
        typer.secho(f"{name:<10} BROKEN: {broken.error}", fg="red")
    for name in sorted(set(counts) - set(host.modules)):
        typer.secho(f"{name:<10} NOT INSTALLED, but {counts[name]} users are enrolled with it", fg="red")


@app.command()
@_one_line_errors
def enroll(
    user: str,
    module: Annotated[
        str | None,
        typer.Option("--module", "-m", help="Module to enrol with; needed only when several are enabled."),
    ] = None,
    admin: AdminOption = False,
    email: EmailOption = None,
) -> None:
    """Enrol USER: show the QR code, ask for a code, then show the backup code."""
    host = _host()
    person = _user(user, admin, email)
    if module is None:
        choices = host.enabled_modules(person.audience)
        if len(choices) != 1:
            raise Failure(
                f"several modules are enabled for {person.audience.value}s; choose one with --module: "
                + ", ".join(choices)
                if choices else f"no module is enabled for {person.audience.value}s"
            )
        module = choices[0]
    step = host.begin_setup(person, module)
    while not isinstance(step, Enrolled):
        prompt = step.prompt
        if step.error:
            typer.secho(step.error, fg="yellow")
            if step.detail:
                typer.echo(step.detail)
        else:
            typer.secho(prompt.message, bold=True)
            if prompt.provisioning is not None:
                typer.echo(prompt.provisioning.qr_terminal)
                typer.echo(f"Secret: {prompt.provisioning.secret}")
                typer.echo(f"URI:    {prompt.provisioning.uri}")
            if prompt.redirect_url:
                raise Failure(f"module {module!r} enrols in a browser; use `secmod serve`")
            _refuse_browser_ceremony(step.module, prompt)
            if prompt.instructions:
                typer.echo(prompt.instructions)
        answer = {field.name: typer.prompt(field.label, hide_input=field.kind == "password") for field in prompt.fields}
        step = host.continue_setup(person, step.setup_id, answer)
    typer.secho("Two-Factor Authentication is now enabled", fg="green")
    if step.message:
        typer.echo(step.message)
    for code in step.backup_codes:
        typer.echo(f"Your Backup Code is: {code}")


@app.command()
@_one_line_errors
def verify(
    user: str,
    admin: AdminOption = False,
    email: EmailOption = None,
    code: Annotated[str | None, typer.Option(help="The code (asked for when missing).")] = None,
) -> None:
    """Log USER in with their second factor (exit 0 accepted, 1 rejected, 2 locked)."""
    host = _host()
    person = _user(user, admin, email)
    state = host.login_state(person)
    if state.step is not LoginStep.CHALLENGE:
        raise Failure(f"{user} has no second factor to verify ({state.step.value})")
    started = host.begin_challenge(person)
    if isinstance(started, VerifyResult):  # the provider is down and the operator chose fail open
        _print_result(started)
        return
    if started.prompt.redirect_url:
        raise Failure(f"module {started.module!r} verifies in a browser; use `secmod serve`")
    _refuse_browser_ceremony(started.module, started.prompt)
    typer.secho(started.prompt.message, bold=True)
    answer: dict[str, str] = {}
    for field in started.prompt.fields:
        value = code if code is not None and len(answer) == 0 else None
        answer[field.name] = value or typer.prompt(field.label, hide_input=field.kind == "password")
    result = host.verify(person, answer, challenge_id=started.challenge_id)
    _print_result(result)
    _exit_for(result)


@app.command()
@_one_line_errors
def recover(
    user: str,
    admin: AdminOption = False,
    email: EmailOption = None,
    method: Annotated[str, typer.Option(help="backup_code, or a method of USER's module (totp: resync).")] = "backup_code",
    answer: Annotated[
        list[str] | None,
        typer.Option("--answer", "-a", metavar="FIELD=VALUE", help="A field of the method's prompt; asked for when missing."),
    ] = None,
) -> None:
    """Log USER in without their device (a backup code), or recover with one of their module's methods.

    The fields asked for are the ones the method declares (see the module's docs).
    """
    host = _host()
    person = _user(user, admin, email)
    methods = {declared.name: declared for declared in host.recovery_methods(person)}
    if not methods:
        raise Failure(f"{user} has no second factor")
    chosen = methods.get(method)
    if chosen is None:
        raise Failure(f"{user} cannot recover with {method!r}; their methods: {', '.join(methods)}")
    given = _parse_answers(answer or [])
    unknown = sorted(set(given) - {field.name for field in chosen.prompt.fields})
    if unknown:
        raise Failure(f"{method} asks for no field {', '.join(unknown)}; it asks for "
                      + ", ".join(field.name for field in chosen.prompt.fields if field.kind != "hidden"))
    if set(given) != {field.name for field in chosen.prompt.fields if field.kind != "hidden"}:
        typer.secho(chosen.prompt.message, bold=True)
        if chosen.prompt.instructions:
            typer.echo(chosen.prompt.instructions)
    values: dict[str, str] = {}
    for field in chosen.prompt.fields:
        if field.kind == "hidden":
            values[field.name] = field.value
        elif field.name in given:
            values[field.name] = given[field.name]
        else:
            # A backup code is as secret as a password: never echoed.
            hide = field.kind == "password" or chosen.name == BACKUP_CODE_METHOD
            values[field.name] = typer.prompt(field.label, hide_input=hide)
    result = host.recover(person, values, method=chosen.name)
    _print_result(result)
    _exit_for(result)


def _parse_answers(pairs: list[str]) -> dict[str, str]:
    answers: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise Failure(f"--answer takes FIELD=VALUE, got {name.strip() or '(nothing)'}{'=...' if sep else ''}")
        answers[name.strip()] = value
    return answers


@app.command()
@_one_line_errors
def status(user: str, admin: AdminOption = False, email: EmailOption = None) -> None:
    """Show USER's second factor, backup codes left and lockout."""
    host = _host()
    person = _user(user, admin, email)
    info = host.status(person)
    login = host.login_state(person)
    if info is None:
        due = {
            LoginStep.MUST_SET_UP: "must set one up at the next login (forced)",
            LoginStep.NOT_REQUIRED: "not asked for one at login",
        }.get(login.step, "")
        typer.echo(f"{user}: no second factor; {due}" if due else f"{user}: no second factor")
        return
    typer.echo(f"{user}: {info.module}, enrolled {info.enrolled_at:%Y-%m-%d %H:%M:%S UTC}")
    typer.echo(f"backup codes left: {info.backup_codes_left}")
    typer.echo(f"codes locked until: {info.locked_until:%Y-%m-%d %H:%M:%S UTC}" if info.locked_until else "not locked")
    if info.backup_locked_until:
        typer.echo(f"backup codes locked until: {info.backup_locked_until:%Y-%m-%d %H:%M:%S UTC}")
    for line in host.describe(person):
        typer.echo(line)


@app.command()
@_one_line_errors
def disable(
    user: str,
    admin: AdminOption = False,
    email: EmailOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (it asks for confirmation by default).")] = False,
) -> None:
    """Remove USER's second factor (as an administrator would; audited).

    It asks for confirmation first; --yes skips the question (for scripts).
    """
    host = _host()
    person = _user(user, admin, email)
    if not yes:
        typer.confirm(f"Disable two-factor authentication for {user}?", abort=True)
    if not host.disable(person, actor="operator:cli"):
        raise Failure(f"{user} has no second factor")
    typer.echo("Two-Factor Authentication has now been disabled for this account.")


@app.command()
@_one_line_errors
def audit(
    user: Annotated[str | None, typer.Option(help="Only this user's events.")] = None,
    admin: AdminOption = False,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
) -> None:
    """Show the audit log, newest first."""
    host = _host()
    person = _user(user, admin, None) if user else None
    typer.echo(f"{'time (UTC)':<19} {'audience':<6} {'user':<20} {'module':<8} {'event':<9} {'outcome':<4} reason actor")
    for event in host.audit_events(user=person, limit=limit):
        typer.echo(
            f"{event.at:%Y-%m-%d %H:%M:%S} {event.audience:<6} {event.user_id:<20} {event.module:<8} "
            f"{event.event:<9} {event.outcome:<4} {event.reason} {event.actor}".rstrip()
        )


@app.command()
def time() -> None:
    """Show the server time, in UTC and local time (TOTP needs it right)."""
    now = datetime.now(UTC)
    typer.echo(f"UTC:   {now:%Y-%m-%d %H:%M:%S %Z}")
    typer.echo(f"local: {now.astimezone():%Y-%m-%d %H:%M:%S %Z (%z)}")
    typer.echo(f"epoch: {now.timestamp():.0f}")


@app.command()
@_one_line_errors
def check() -> None:
    """Check the config, and that each enabled module activates (exit 1 if one fails)."""
    from .errors import ModuleUnavailable

    path = config_path(_state["config"])
    host = _host()
    typer.echo(f"config: {path if path.exists() else 'embedded defaults (no ' + str(path) + ')'}")
    typer.echo(f"database: {host.engine.url.render_as_string(hide_password=True)}")
    failed = False
    for name in sorted(host.modules):
        settings = host.module_settings[name]
        if not (settings.clients or settings.admins):
            typer.echo(f"{name}: off")
            continue
        try:
            typer.secho(f"{name}: ok ({host.activate(name).message})", fg="green")
        except ModuleUnavailable as error:
            failed = True
            typer.secho(f"{name}: FAILED: {error}", fg="red", err=True)
    _warn_about_other_hosts(host)
    if failed:
        raise typer.Exit(1)


def _warn_about_other_hosts(host: Any) -> None:
    from .fleet import disagreeing_hosts, settings_fingerprint

    fingerprint = settings_fingerprint(host.settings, host.module_settings)
    typer.echo(f"settings fingerprint: {fingerprint}")
    for other in disagreeing_hosts(host.engine, fingerprint):
        typer.secho(
            f"warning: host {other.name} (started {other.seen_at:%Y-%m-%d %H:%M:%S UTC}) shares this database "
            f"with different settings (fingerprint {other.fingerprint})", err=True, fg="yellow",
        )


@app.command()
@_one_line_errors
def purge() -> None:
    """Delete audit events and used backup codes past [retention], and expired pending steps.

    In small batches, so logins go on meanwhile; `secmod serve` also does it every
    [retention] purge_every_minutes.
    """
    from .retention import purge as purge_now

    host = _host()
    purged = purge_now(host.engine, host.settings.retention, now=host.clock())
    typer.echo(f"purged {purged.audit_events} audit events, {purged.pending_steps} expired pending steps, "
               f"{purged.used_backup_codes} used backup codes")


@app.command()
@_one_line_errors
def seal(
    module: str,
    key: str,
    write: Annotated[bool, typer.Option("--write", help="Store it in the config file instead of printing it.")] = False,
) -> None:
    """Seal a secret setting (read from stdin or a hidden prompt) for [modules.MODULE] KEY.

    MODULE ``web`` seals the web host's own secrets instead: [web] api_token or session_secret.
    """
    settings = load_settings(_state["config"])
    ring = KeyRing.open(settings.resolve(settings.sealing.key_file))
    module = module.lower()
    if module == "web" and key not in WEB_SECRETS:
        raise Failure(f"[web] {key} is not a secret; sealable: {', '.join(WEB_SECRETS)}", code=2)
    value = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else typer.prompt(key, hide_input=True)
    sealed = ring.seal_setting(module, key, value)
    if not write:
        typer.echo(sealed)
        return
    path = config_path(_state["config"])
    if module == "web":
        _set_web_setting(path, key, sealed)
        typer.echo(f"sealed [web] {key} into {path}")
        return
    set_module_setting(path, module, key, sealed)
    typer.echo(f"sealed [modules.{module}] {key} into {path}")


WEB_SECRETS = ("api_token", "session_secret")


def _set_web_setting(path: Path, key: str, value: str) -> None:
    """Write ``[web] KEY = value`` into the TOML file, keeping its comments."""
    import tomlkit

    document = tomlkit.parse(path.read_text()) if path.exists() else tomlkit.document()
    document.setdefault("web", tomlkit.table())[key] = value
    path.write_text(tomlkit.dumps(document))


@keys_app.command("rotate")
@_one_line_errors
def keys_rotate() -> None:
    """Add a new primary key and re-seal everything under it, without downtime.

    Old keys stay in the ring, so processes still running read both until they reload.
    """
    import tomlkit

    host = _host()
    new_key = host.keyring.add_key()
    rows = host.reseal_all()
    path = config_path(_state["config"])
    settings_resealed = 0
    if path.exists():
        document = tomlkit.parse(path.read_text())
        tables = [*document.get("modules", {}).items(), *([("web", document["web"])] if "web" in document else [])]
        for name, table in tables:
            settings_resealed += reseal_settings(host.keyring, name, table)
        if settings_resealed:
            path.write_text(tomlkit.dumps(document))
    typer.echo(f"new primary key {new_key}; re-sealed {rows} stored values and {settings_resealed} settings")


@admin_app.command("reset-password")
@_one_line_errors
def admin_reset_password(email: str) -> None:
    """Give the web host's administrator EMAIL a new one-time password (printed once).

    For an operator who lost theirs; it must be replaced at its first login.
    """
    import secrets

    from secmod.host.web.app import accounts_store

    settings = load_settings(_state["config"])
    accounts = accounts_store(settings)
    try:
        account = accounts.find(Audience.ADMIN, email)
        if account is None:
            raise Failure(f"no administrator {email.strip().lower()} in the web host's accounts")
        password = secrets.token_urlsafe(12)
        accounts.set_password(account, password, one_time=True)
    finally:
        accounts.engine.dispose()
    with _host() as host:
        host.record_event("password_reset", actor="operator:cli", subject=account.as_user(),
                          detail="one-time password set from the command line")
    typer.echo(f"New one-time password for {account.email} (shown only now): {password}")


@app.command()
@_one_line_errors
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default [web] host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default [web] port).")] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, max=64, help="Worker processes (default [web] workers).")
    ] = None,
    log_format: Annotated[
        str | None, typer.Option(help="text, or json lines (default [web] log_format).")
    ] = None,
    access_log: Annotated[
        bool | None,
        typer.Option(
            "--access-log/--no-access-log", help="Log each request (default [web] access_log)."
        ),
    ] = None,
) -> None:
    """Run the reference web host: client area, admin area and JSON API."""
    try:
        from secmod.host.web import serve as run_web_host
    except ImportError as missing:
        raise Failure("secmod serve needs the web extra: pip install 'secmod[web]'", code=2) from missing

    if log_format not in (None, "text", "json"):
        raise Failure(f"--log-format must be text or json, not {log_format!r}")
    run_web_host(
        _state["config"], host=host, port=port, workers=workers,
        log_format=log_format,  # type: ignore[arg-type]  # checked just above
        access_log=access_log,
    )


@app.command("new-module")
@_one_line_errors
def new_module(
    name: str,
    directory: Annotated[Path, typer.Option("--dir", help="Where to create secmod-NAME/.")] = Path("."),
) -> None:
    """Write a complete, installable module package secmod-NAME that passes its own tests."""
    from .scaffold import write_module

    try:
        project = write_module(name, directory)
    except (ValueError, FileExistsError) as error:
        raise Failure(str(error)) from None
    typer.echo(f"wrote {project}")
    typer.echo(f"next: pip install -e '{project}[test]' && pytest {project}")


def _config_in(argv: list[str]) -> str | None:
    """The --config value of a command line, before Typer parses it."""
    for index, arg in enumerate(argv):
        if arg in {"--config", "-c"} and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--config="):
            return arg.partition("=")[2]
    return None


def add_module_commands(argv: list[str] | None = None) -> typer.Typer:
    """secmod's command line with each loadable module's commands as ``secmod NAME ...``
    (hook ``register_commands``); ``argv`` gives the ``--config`` to read.

    Modules the settings block or leave out of their allow list are never imported. A
    module whose name is a command of secmod's own, or whose hook fails, is skipped with
    a warning: one module cannot take the command line down.
    """
    from .calls import ModuleCaller, ModuleFailed
    from .registry import ModuleRegistry, new_plugin_manager

    argv = sys.argv[1:] if argv is None else argv
    try:
        settings = load_settings(_config_in(argv))
        allow, block = settings.loading.allow, settings.loading.block
    except ConfigError:
        allow, block = None, []  # the command itself will report the broken file
    registry = ModuleRegistry(new_plugin_manager())
    registry.load(allow=allow, block=block, required=set(), entry_points=True)
    # A copy of the core app, so that each call starts from secmod's own commands only.
    full = typer.Typer(name=app.info.name, help=app.info.help, no_args_is_help=True,
                       pretty_exceptions_enable=False, add_completion=False)
    full.registered_callback = app.registered_callback
    full.registered_commands = list(app.registered_commands)
    full.registered_groups = list(app.registered_groups)
    taken = {
        command.name or (command.callback.__name__.replace("_", "-") if command.callback else "")
        for command in app.registered_commands
    } | {group.name for group in app.registered_groups if group.name}
    warn = logging.getLogger("secmod.cli").warning
    for name, module in sorted(registry.modules.items()):
        group = typer.Typer(name=name, help=f"{module.info.friendly_name}: the module's own commands.",
                            no_args_is_help=True, add_completion=False)
        # The command line reads no module's settings (a broken file must not hide every
        # command), so the caller gets the model's defaults, unvalidated and unused.
        caller = ModuleCaller(module, module.info.settings_model.model_construct())
        try:
            caller.register_commands(group)
        except ModuleFailed as failure:
            warn("module %r: register_commands failed (%s); its commands are skipped", name, failure.error_type)
            continue
        if not (group.registered_commands or group.registered_groups):
            continue
        if name in taken:
            warn("module %r: its name is a secmod command; its commands are skipped", name)
            continue
        full.add_typer(group, name=name)
    return full


def main() -> None:
    config = _config_in(sys.argv[1:])
    if config is not None:
        # Modules' own commands (register_commands) find the file as secmod's do:
        # ModuleSettingsFile reads $SECMOD_CONFIG.
        os.environ["SECMOD_CONFIG"] = config
    add_module_commands()()


if __name__ == "__main__":  # pragma: no cover
    main()
