"""secmod's settings: one TOML file, overridden by ``SECMOD_*`` environment variables.

The file is found at ``--config``, else ``$SECMOD_CONFIG``, else ``./secmod.toml``; a
missing file means the embedded defaults. Nested keys are overridden with a double
underscore, e.g. ``SECMOD_MODULES__DUO__CLIENT_SECRET`` or ``SECMOD_THROTTLE__LOCKOUT_MINUTES``.
Each ``[modules.NAME]`` table stays raw here; the host validates it against the
module's own settings model once the module is loaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
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


class ConfigError(Exception):
    """The configuration is wrong; the message names the file, the key and the problem."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoadingSettings(_Section):
    """Which installed modules may be imported at all (decided before importing)."""

    allow: list[str] | None = None
    """Only these entry point names are loaded; ``None`` means every installed module."""
    block: list[str] = Field(default_factory=list)
    """These entry point names are never imported."""


class SealingSettings(_Section):
    key_file: str = "secmod.keys"
    """The key ring (created 0600 on first use); relative paths are next to the config file."""


class ThrottleSettings(_Section):
    max_code_failures: int = Field(5, ge=1, le=1000)
    """Wrong codes judged before the person is locked out (WHMCS: 5)."""
    max_backup_failures: int = Field(3, ge=1, le=1000)
    """Wrong backup codes judged before backup codes are locked (WHMCS: 3)."""
    lockout_minutes: float = Field(15, gt=0, le=7 * 24 * 60)
    max_address_failures: int = Field(20, ge=1, le=100_000)
    """Wrong answers from one client address, across all accounts, before that address
    is locked out (credential stuffing). Needs the host application to pass the address."""
    address_window_minutes: float = Field(15, gt=0, le=7 * 24 * 60)


class BackupCodeSettings(_Section):
    count: int = Field(1, ge=1, le=20)
    """How many one-use codes a person holds at once (WHMCS: 1)."""


class RetentionSettings(_Section):
    """``[retention]``: how long records are kept; the purge deletes in small batches."""

    audit_days: int = Field(365, ge=0)
    """Audit events older than this are deleted; 0 keeps them forever."""
    used_backup_code_days: int = Field(365, ge=0)
    """Backup codes used longer ago than this are deleted; 0 keeps them. Unused ones stay."""
    purge_every_minutes: int = Field(60, ge=0)
    """How often each ``secmod serve`` worker purges; 0 leaves it to ``secmod purge`` (cron)."""
    batch_size: int = Field(1000, ge=1, le=100_000)
    """Rows per delete transaction: small, so no login waits on a long one."""


class WebSettings(_Section):
    """``[web]``: the reference web host (``secmod serve``)."""

    host: str = "127.0.0.1"
    """The address to listen on."""
    port: int = Field(8000, ge=1, le=65535)
    base_url: str = "http://localhost:8000"
    """The public address people browse. A redirecting module's callback is
    {base_url}/login/{module}/callback, and WebAuthn's relying party (id and origin) comes
    from it, which cannot be an IP address: hence localhost, not 127.0.0.1."""
    session_secret: str | None = None
    """Signs the session cookie; when unset, one is generated and kept in the accounts database."""
    api_token: str | None = None
    """The bearer token of the JSON API (/api/v1); unset, the API answers 503 api_disabled."""
    accounts_database_url: str | None = None
    """Where the web host keeps its own accounts and sessions (webhost_* tables); default: database_url."""
    secure_cookies: bool = False
    """Mark the session cookie Secure (set it when the site is served over https)."""
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

    database_url: str = "sqlite:///secmod.db"
    """Any SQLAlchemy URL; relative SQLite paths are next to the config file."""
    issuer: str = "secmod"
    """The name authenticator apps show beside the account (WHMCS: the System URL host)."""
    force_clients: bool = False
    force_admins: bool = False
    challenge_ttl_seconds: int = Field(300, ge=30, le=3600)
    setup_ttl_seconds: int = Field(900, ge=60, le=86400)
    loading: LoadingSettings = LoadingSettings()
    sealing: SealingSettings = SealingSettings()
    throttle: ThrottleSettings = ThrottleSettings()
    backup_codes: BackupCodeSettings = BackupCodeSettings()
    web: WebSettings = WebSettings()
    retention: RetentionSettings = RetentionSettings()
    modules: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Raw ``[modules.NAME]`` tables; validated by each module's settings model."""

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
        return {"base_url": self.web.base_url}

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


def describe_validation_error(error: ValidationError, *, where: str, prefix: str = "") -> str:
    """One readable paragraph: which file, which key, what is wrong (never the value)."""
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        problem = item["msg"]
        if item["type"] == "extra_forbidden":
            problem = "unknown key"
        lines.append(f"{where}: {prefix}{key}: {problem}")
    return "\n".join(lines)


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> SecmodSettings:
    """Read the settings from the TOML file (if it exists) and the environment.

    :raises ConfigError: the file cannot be parsed or a value is wrong; the message
        names the file and the key.
    """
    file = config_path(path)
    if path is not None and not file.exists():
        raise ConfigError(f"{file}: config file not found")
    # pydantic-settings takes the TOML path from the class, so each load gets its own.
    config = {**SecmodSettings.model_config, "toml_file": file if file.exists() else None}
    loaded_cls = type("SecmodSettings", (SecmodSettings,), {"model_config": config})
    try:
        settings = loaded_cls(**overrides)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error, where=str(file))) from None
    except ValueError as error:  # TOML syntax errors surface as ValueError subclasses
        raise ConfigError(f"{file}: {error}") from None
    return settings.model_copy(update={"config_file": file})


def set_module_setting(path: str | os.PathLike[str], module: str, key: str, value: object) -> None:
    """Write ``[modules.MODULE] KEY = value`` into the TOML file, keeping its comments."""
    import tomlkit

    file = Path(path)
    document = tomlkit.parse(file.read_text()) if file.exists() else tomlkit.document()
    modules = document.setdefault("modules", tomlkit.table(is_super_table=True))
    modules.setdefault(module, tomlkit.table())[key] = value
    file.write_text(tomlkit.dumps(document))
