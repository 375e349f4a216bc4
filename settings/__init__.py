"""secmod's settings: one TOML file, overridden by ``SECMOD_*`` environment variables.

The file is found at ``--config``, else ``$SECMOD_CONFIG``, else ``./secmod.toml``; a
missing file means the embedded defaults. Nested keys are overridden with a double
underscore, e.g. ``SECMOD_MODULES__DUO__CLIENT_SECRET`` or ``SECMOD_THROTTLE__LOCKOUT_MINUTES``.
Each ``[modules.NAME]`` table stays raw here; the host validates it against the
module's own settings model once the module is loaded.
"""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from secmod.hookspecs.types import CONFIG_DIR
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = [
    "BackupCodeSettings",
    "ConfigError",
    "LoadingSettings",
    "RetentionSettings",
    "SealingSettings",
    "SecmodSettings",
    "ThrottleSettings",
    "WebSettings",
    "config_path",
    "describe_validation_error",
    "load_settings",
    "set_module_setting",
]

DEFAULT_CONFIG = "secmod.toml"
# A lockout is a pause, not a ban: a week at most keeps every deadline a finite date.
MAX_LOCKOUT_MINUTES = 7 * 24 * 60


class ConfigError(Exception):
    """The configuration is wrong; the message names the file, the key and the problem."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoadingSettings(_Section):
    """Which installed modules may be imported at all (decided before importing)."""

    allow: list[str] | None = Field(
        default=None, title="Modules allowed",
        description="Only these entry point names are loaded; unset means every installed module.")
    block: list[str] = Field(
        default_factory=list, title="Modules blocked", description="These entry point names are never imported.")


class SealingSettings(_Section):
    key_file: str = Field(
        default="secmod.keys", min_length=1, max_length=4096, title="Key file",
        description="The key ring that seals secrets (created 0600 on first use; refused when other "
        "users may read it). A relative path is next to the config file.")


class ThrottleSettings(_Section):
    max_code_failures: int = Field(
        default=5, ge=1, le=1000, title="Wrong codes before a lockout",
        description="Wrong codes judged before the person is locked out (WHMCS: 5).")
    max_backup_failures: int = Field(
        default=3, ge=1, le=1000, title="Wrong backup codes before a lockout",
        description="Wrong backup codes judged before backup codes are locked (WHMCS: 3).")
    lockout_minutes: float = Field(
        default=15, gt=0, le=MAX_LOCKOUT_MINUTES, allow_inf_nan=False, title="Lockout (minutes)",
        description="How long a lockout lasts, at most a week (WHMCS: 15).")
    max_address_failures: int = Field(
        default=20, ge=1, le=100_000, title="Wrong answers per client address",
        description="Wrong answers from one client address, across all accounts, before that address "
        "is locked out (credential stuffing). Needs the host application to pass the address.")
    address_window_minutes: float = Field(
        default=15, gt=0, le=MAX_LOCKOUT_MINUTES, allow_inf_nan=False, title="Address window (minutes)",
        description="How long wrong answers from one address are counted, and its lockout lasts.")


class BackupCodeSettings(_Section):
    count: int = Field(
        default=1, ge=1, le=20, title="Backup codes per person",
        description="How many one-use codes a person holds at once (WHMCS: 1).")


class RetentionSettings(_Section):
    """``[retention]``: how long records are kept; the purge deletes in small batches."""

    audit_days: int = Field(365, ge=0, le=100 * 365)
    """Audit events older than this are deleted; 0 keeps them forever."""
    used_backup_code_days: int = Field(365, ge=0, le=100 * 365)
    """Backup codes used longer ago than this are deleted; 0 keeps them. Unused ones stay."""
    purge_every_minutes: int = Field(60, ge=0, le=7 * 24 * 60)
    """How often each ``secmod serve`` worker purges; 0 leaves it to ``secmod purge`` (cron)."""
    batch_size: int = Field(1000, ge=1, le=100_000)
    """Rows per delete transaction: small, so no login waits on a long one."""


class WebSettings(_Section):
    """``[web]``: the reference web host (``secmod serve``)."""

    host: str = Field(default="127.0.0.1", min_length=1, max_length=255, title="Listen address",
                      description="The address secmod serve listens on.")
    port: int = Field(default=8000, ge=1, le=65535, title="Port", description="The port secmod serve listens on.")
    base_url: str = Field(
        default="http://localhost:8000", min_length=1, max_length=2048, title="Public address",
        description="The address people browse. A redirecting module's callback is "
        "{base_url}/login/{module}/callback, and WebAuthn's relying party (id and origin) comes from it, "
        "which cannot be an IP address: hence localhost, not 127.0.0.1.")
    session_secret: str | None = Field(
        default=None, title="Session signing key",
        description="Signs the session cookie; when unset, one is generated and kept in the accounts database.")
    api_token: str | None = Field(
        default=None, title="API token",
        description="The bearer token of the JSON API (/api/v1); unset, the API answers 503 api_disabled.")
    accounts_database_url: str | None = Field(
        default=None, title="Accounts database",
        description="Where the web host keeps its own accounts and sessions (webhost_* tables); "
        "default: database_url.")
    secure_cookies: bool = Field(
        default=False, title="Secure cookies",
        description="Mark the session cookie Secure (set it when the site is served over https).")
    workers: int = Field(1, ge=1, le=64)
    """Worker processes of ``secmod serve`` (uvicorn's supervisor restarts one that dies)."""
    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object per log line, for log shippers."""
    access_log: bool = False
    """A line per request (query strings hidden). Off by default: it costs CPU on every
    verify, and the reverse proxy in front usually keeps one already."""
    settings_editable: bool = True
    """False makes the admin settings pages read-only: for operators who deploy
    ``secmod.toml`` to several hosts themselves (the page writes only the local file)."""


class SecmodSettings(BaseSettings):
    """The whole of ``secmod.toml``."""

    model_config = SettingsConfigDict(
        env_prefix="SECMOD_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    database_url: str = Field(
        default="sqlite:///secmod.db", min_length=1, title="Database",
        description="Any SQLAlchemy URL; a relative SQLite path is next to the config file.")
    database_timeout_seconds: float = Field(
        default=10.0, ge=1, le=600, title="Database timeout (seconds)",
        description="How long one database statement may take before the login is refused as temporarily "
        "unavailable; on PostgreSQL also how long a server that stopped answering is waited for. Connecting "
        "and waiting for a free connection take at most 5 seconds each, or this if shorter.")
    issuer: str = Field(
        default="secmod", min_length=1, max_length=64, title="Issuer",
        description="The name authenticator apps show beside the account (WHMCS: the System URL host).")
    force_clients: bool = Field(
        default=False, title="Force Client Users to enable Two Factor Authentication on Next Login",
        description="Clients without a second factor are sent to set one up when they next log in.")
    force_admins: bool = Field(
        default=False, title="Force Administrative Users to enable Two Factor Authentication on Next Login",
        description="Administrators without a second factor are sent to set one up when they next log in.")
    challenge_ttl_seconds: int = Field(
        default=300, ge=30, le=3600, title="Challenge lifetime (seconds)",
        description="How long a started login challenge may be answered.")
    setup_ttl_seconds: int = Field(
        default=900, ge=60, le=86400, title="Setup lifetime (seconds)",
        description="How long an enrolment in progress may be finished.")
    loading: LoadingSettings = LoadingSettings()
    sealing: SealingSettings = SealingSettings()
    throttle: ThrottleSettings = ThrottleSettings()
    backup_codes: BackupCodeSettings = BackupCodeSettings()
    web: WebSettings = WebSettings()
    retention: RetentionSettings = RetentionSettings()
    modules: dict[str, dict[str, Any]] = Field(
        default_factory=dict, title="Modules",
        description="Raw [modules.NAME] tables; validated by each module's settings model.")

    # Not read from the file: where the file was, to resolve relative paths.
    config_file: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and "fail_closed" in data:
            raise ValueError(
                "fail_closed was removed: a crashing module now always refuses (the backup code "
                'still works); to let people in while a provider is down, set fail_mode = "open" '
                "in that module's [modules.NAME] table"
            )
        return data

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        import sqlalchemy as sa
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            sa.engine.make_url(value).get_dialect()
        except ArgumentError:
            raise ValueError("not a database URL (e.g. sqlite:///secmod.db)") from None
        except NoSuchModuleError:
            raise ValueError("unknown database driver (e.g. sqlite:/// or postgresql+psycopg://)") from None
        except ImportError as error:
            raise ValueError(f"the database driver is not installed ({error.name})") from None
        return value

    @field_validator("modules")
    @classmethod
    def _module_tables(cls, value: dict[str, Any]) -> dict[str, dict[str, Any]]:
        for name, table in value.items():
            if not isinstance(table, dict):
                raise ValueError(f"[modules.{name}] must be a table")
        return {name.lower(): table for name, table in value.items()}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment over file; ``load_settings`` sets ``toml_file`` on a subclass.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @property
    def base_dir(self) -> Path:
        return self.config_file.parent if self.config_file else Path.cwd()

    def resolve(self, path: str) -> Path:
        """A path from the settings, relative to the config file's folder."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else self.base_dir / candidate

    @property
    def module_settings_context(self) -> dict[str, str]:
        """The pydantic validation context every module's settings are validated with."""
        return {"base_url": self.web.base_url, CONFIG_DIR: str(self.base_dir)}

    @property
    def resolved_database_url(self) -> str:
        prefix = "sqlite:///"
        url = self.database_url
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.resolve(url[len(prefix):]))
        return url


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Where the config file is: ``explicit``, else ``$SECMOD_CONFIG``, else ``./secmod.toml``."""
    return Path(explicit or os.environ.get("SECMOD_CONFIG") or DEFAULT_CONFIG).expanduser().resolve()


def describe_validation_error(
    error: ValidationError, *, where: str | Callable[[tuple[str, ...]], str], prefix: str = "",
    labels: Mapping[str, str] | None = None,
) -> str:
    """Readable lines, one per wrong key: where, which key, what is wrong (never the value).

    :param where: the file (or a function of the key giving the file or variable).
    :param labels: titles to show for keys, as the admin form names them.
    """
    lines: list[str] = []
    for item in error.errors():
        # List items (``block.0``, ``block.1``) are one key with one problem to fix.
        path = tuple(str(part) for part in item["loc"] if not isinstance(part, int))
        key = ".".join(path)
        problem = item["msg"]
        if item["type"] == "extra_forbidden":
            problem = "unknown key"
        problem = problem.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        place = where(path) if callable(where) else where
        if labels is not None:
            label = labels.get(path[0]) if path else None
            line = f"{label}: {problem}" if label else f"{key}: {problem}" if key else problem
        else:
            line = f"{place}: {prefix}{key}: {problem}" if key else f"{place}: {prefix}{problem}".rstrip()
        if line not in lines:
            lines.append(line)
    return "\n".join(lines)


def _environment_name(path: tuple[str, ...]) -> str | None:
    """The ``SECMOD_*`` variable that set the setting at ``path``, if one did."""
    wanted = "SECMOD_" + "__".join(path).upper()
    return next((name for name in os.environ if name.upper() == wanted), None)


def _where(file: Path) -> Callable[[tuple[str, ...]], str]:
    def where(path: tuple[str, ...]) -> str:
        # A value from the environment wins over the file: name the variable, not the file.
        for depth in range(len(path), 0, -1):
            variable = _environment_name(path[:depth])
            if variable is not None:
                return f"environment variable {variable}"
        return str(file)

    return where


def _toml_error(file: Path, error: tomllib.TOMLDecodeError) -> ConfigError:
    """Where the TOML is broken: the line and its key, never the line's value."""
    found = re.search(r"at line (\d+)", str(error))
    reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(error))
    if found is None:
        return ConfigError(f"{file}: not valid TOML: {reason}")
    number = int(found.group(1))
    lines = file.read_bytes().decode("utf-8", errors="replace").splitlines()
    text = lines[number - 1].strip() if number <= len(lines) else ""
    key = text.split("=", 1)[0].strip() if "=" in text else text if text.startswith("[") else ""
    where = f"line {number} ({key[:80]})" if key else f"line {number}"
    return ConfigError(f"{file}: {where}: not valid TOML: {reason}")


def _read_toml(file: Path) -> None:
    """Refuse a config path that is not a readable UTF-8 TOML file, naming the problem."""
    if file.is_dir():
        raise ConfigError(f"{file}: is a folder, not a config file (give the path of secmod.toml)")
    try:
        tomllib.loads(file.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigError(f"{file}: not valid TOML: the file is not UTF-8 text (byte {error.start})") from None
    except tomllib.TOMLDecodeError as error:
        raise _toml_error(file, error) from None
    except OSError as error:
        raise ConfigError(f"{file}: cannot be read ({error.strerror or type(error).__name__})") from None


def _check_folders(settings: SecmodSettings, file: Path) -> None:
    """The folders the database and the key file live in must be there and writable."""
    where = _where(file)
    prefix = "sqlite:///"
    url = settings.resolved_database_url
    if url.startswith(prefix) and ":memory:" not in url and url != prefix:
        folder = Path(url[len(prefix):]).parent
        problem = _unwritable(folder, create=True)
        if problem:
            raise ConfigError(
                f"{where(('database_url',))}: database_url: the SQLite database cannot be kept in {folder}: {problem}"
            )
    key_file = settings.resolve(settings.sealing.key_file)
    place = where(("sealing", "key_file"))
    if key_file.is_dir():
        raise ConfigError(f"{place}: sealing.key_file: {key_file} is a folder, not a key file")
    if not key_file.exists():
        problem = _unwritable(key_file.parent, create=False)
        if problem:
            raise ConfigError(f"{place}: sealing.key_file: the key file cannot be created in {key_file.parent}: {problem}")


def _unwritable(folder: Path, *, create: bool) -> str:
    """Why ``folder`` cannot take new files, or ``""``; made first when ``create``."""
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        elif not folder.exists():
            return "the folder does not exist"
        if not folder.is_dir():
            return "that is not a folder"
        # A real file, not os.access: root passes access checks on read-only file systems.
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        return error.strerror or type(error).__name__
    return ""


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> SecmodSettings:
    """Read the settings from the TOML file (if it exists) and the environment.

    :raises ConfigError: the file cannot be parsed or a value is wrong; each line names
        the file (or the ``SECMOD_*`` variable) and the key.
    """
    file = config_path(path)
    if path is not None and not file.exists():
        raise ConfigError(f"{file}: config file not found")
    if file.exists():
        _read_toml(file)
    # pydantic-settings takes the TOML path from the class, so each load gets its own.
    config = {**SecmodSettings.model_config, "toml_file": file if file.exists() else None}
    loaded_cls = type("SecmodSettings", (SecmodSettings,), {"model_config": config})
    try:
        settings = loaded_cls(**overrides)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error, where=_where(file))) from None
    except ValueError as error:  # an environment value that is not JSON, for a table
        raise ConfigError(f"{file}: {error}") from None
    loaded = settings.model_copy(update={"config_file": file})
    _check_folders(loaded, file)
    return loaded


def set_module_setting(path: str | os.PathLike[str], module: str, key: str, value: object) -> None:
    """Write ``[modules.MODULE] KEY = value`` into the TOML file, keeping its comments.

    A dotted ``KEY`` (``keys.vvcccccbhcgd.aes_key``) is written in its nested table.
    """
    import tomlkit

    file = Path(path)
    document = tomlkit.parse(file.read_text()) if file.exists() else tomlkit.document()
    modules = document.setdefault("modules", tomlkit.table(is_super_table=True))
    *tables, name = key.split(".")
    table = modules.setdefault(module, tomlkit.table())
    for part in tables:
        table = table.setdefault(part, tomlkit.table())
    table[name] = value
    file.write_text(tomlkit.dumps(document))
