"""Broken configurations: each gives one clear error line naming the file and key, exit 2.

A corpus of about sixty broken ``secmod.toml`` files (and ``SECMOD_*`` variables) is run
through ``secmod check``, ``secmod status`` and ``secmod serve``. None may end in a
traceback, a hang, a second line, or start serving.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from secmod.host.cli import app

# Each run is bounded: a configuration that makes a command hang fails the test instead.
RUN_BOUND_SECONDS = 60


@dataclass(frozen=True)
class Broken:
    """One broken configuration.

    :param toml: the file's text (``None``: write no file; ``bytes``: written as they are).
    :param names: what the error line must name, besides the file or the variable.
    :param env: ``SECMOD_*`` variables set for the run.
    :param prepare: changes to make in the folder before the run (key files, folders).
    :param where: what names the place of the mistake; default the config file's name.
    """

    toml: str | bytes | None
    names: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[Path], None] | None = None
    where: str = "secmod.toml"


def _key_file_world_readable(folder: Path) -> None:
    from secmod.host.sealing import KeyRing

    KeyRing.open(folder / "secmod.keys")
    (folder / "secmod.keys").chmod(0o644)


def _key_file_group_writable(folder: Path) -> None:
    from secmod.host.sealing import KeyRing

    KeyRing.open(folder / "secmod.keys")
    (folder / "secmod.keys").chmod(0o660)


def _key_file_garbage(folder: Path) -> None:
    (folder / "secmod.keys").write_text("this is not a key ring")
    (folder / "secmod.keys").chmod(0o600)


def _key_file_is_a_folder(folder: Path) -> None:
    (folder / "keys.d").mkdir()


def _a_file_where_a_folder_should_be(folder: Path) -> None:
    (folder / "plain-file").write_text("not a folder")


YUBI_ON = "[modules.yubikey]\nclients = true\n"
DUO_ON = "[modules.duo]\nclients = true\n"

CORPUS: dict[str, Broken] = {
    # TOML itself
    "unterminated-string": Broken('issuer = "secmod\n', ("line 2", "issuer")),
    "duplicate-key": Broken('issuer = "a"\nissuer = "b"\n', ("issuer",)),
    "not-utf8": Broken(b'issuer = "\xff\xfe"\n', ("UTF-8",)),
    "binary": Broken(b"\x00\x01\x02\x03", ("not valid TOML",)),
    "table-twice": Broken("[throttle]\n[throttle]\n", ("throttle",)),
    # top-level values
    "database-url-number": Broken("database_url = 5\n", ("database_url",)),
    "database-url-empty": Broken('database_url = ""\n', ("database_url",)),
    "database-url-not-a-url": Broken('database_url = "not a url"\n', ("database_url",)),
    "database-url-unknown-driver": Broken('database_url = "nosuchdb://host/db"\n', ("database_url",)),
    "database-folder-is-a-file": Broken(
        'database_url = "sqlite:///plain-file/secmod.db"\n', ("database_url",),
        prepare=_a_file_where_a_folder_should_be),
    "database-folder-cannot-be-made": Broken(
        'database_url = "sqlite:////proc/secmod-nowhere/secmod.db"\n', ("database_url",)),
    "database-refuses-connections": Broken(
        'database_url = "postgresql+psycopg://secmod@127.0.0.1:1/secmod"\n', ("database_url", "cannot be reached")),
    "issuer-list": Broken("issuer = []\n", ("issuer",)),
    "issuer-empty": Broken('issuer = ""\n', ("issuer",)),
    "force-clients-text": Broken('force_clients = "yes please"\n', ("force_clients",)),
    "force-admins-number": Broken("force_admins = 3\n", ("force_admins",)),
    "challenge-ttl-zero": Broken("challenge_ttl_seconds = 0\n", ("challenge_ttl_seconds",)),
    "challenge-ttl-huge": Broken("challenge_ttl_seconds = 1000000000\n", ("challenge_ttl_seconds",)),
    "challenge-ttl-nan": Broken("challenge_ttl_seconds = nan\n", ("challenge_ttl_seconds",)),
    "setup-ttl-negative": Broken("setup_ttl_seconds = -1\n", ("setup_ttl_seconds",)),
    "unknown-top-level-key": Broken('colour = "blue"\n', ("colour", "unknown key")),
    # [throttle]
    "lockout-inf": Broken("[throttle]\nlockout_minutes = inf\n", ("lockout_minutes",)),
    "lockout-nan": Broken("[throttle]\nlockout_minutes = nan\n", ("lockout_minutes",)),
    "lockout-negative": Broken("[throttle]\nlockout_minutes = -5\n", ("lockout_minutes",)),
    "lockout-astronomic": Broken("[throttle]\nlockout_minutes = 1e300\n", ("lockout_minutes",)),
    "code-failures-zero": Broken("[throttle]\nmax_code_failures = 0\n", ("max_code_failures",)),
    "code-failures-huge": Broken("[throttle]\nmax_code_failures = 9223372036854775807\n", ("max_code_failures",)),
    "backup-failures-negative": Broken("[throttle]\nmax_backup_failures = -1\n", ("max_backup_failures",)),
    "backup-failures-huge": Broken("[throttle]\nmax_backup_failures = 1000000\n", ("max_backup_failures",)),
    "throttle-not-a-table": Broken("throttle = 5\n", ("throttle",)),
    "throttle-unknown-key": Broken("[throttle]\nlockout_hours = 1\n", ("lockout_hours", "unknown key")),
    # [backup_codes]
    "backup-count-zero": Broken("[backup_codes]\ncount = 0\n", ("count",)),
    "backup-count-huge": Broken("[backup_codes]\ncount = 1000\n", ("count",)),
    # [sealing]
    "key-file-empty": Broken('[sealing]\nkey_file = ""\n', ("key_file",)),
    "key-file-number": Broken("[sealing]\nkey_file = 5\n", ("key_file",)),
    "key-file-is-a-folder": Broken('[sealing]\nkey_file = "keys.d"\n', ("key_file", "keys.d"),
                                   prepare=_key_file_is_a_folder),
    "key-file-folder-missing": Broken('[sealing]\nkey_file = "missing/secmod.keys"\n', ("key_file",)),
    "key-file-world-readable": Broken("", ("chmod 600",), prepare=_key_file_world_readable, where="secmod.keys"),
    "key-file-group-writable": Broken("", ("chmod 600",), prepare=_key_file_group_writable, where="secmod.keys"),
    "key-file-garbage": Broken("", ("unreadable key file",), prepare=_key_file_garbage, where="secmod.keys"),
    # [loading]
    "allow-a-string": Broken('[loading]\nallow = "totp"\n', ("allow",)),
    "block-numbers": Broken("[loading]\nblock = [1, 2]\n", ("block",)),
    # [web]
    "port-zero": Broken("[web]\nport = 0\n", ("port",)),
    "port-too-big": Broken("[web]\nport = 70000\n", ("port",)),
    "port-text": Broken('[web]\nport = "eighty"\n', ("port",)),
    "base-url-number": Broken("[web]\nbase_url = 5\n", ("base_url",)),
    "secure-cookies-text": Broken('[web]\nsecure_cookies = "sometimes"\n', ("secure_cookies",)),
    # [modules.*]
    "modules-not-a-table": Broken("modules = 5\n", ("modules",)),
    "module-not-a-table": Broken("[modules]\ntotp = 5\n", ("totp",)),
    "totp-digits": Broken("[modules.totp]\ndigits = 9\n", ("[modules.totp]", "digits")),
    "totp-period-inf": Broken("[modules.totp]\nperiod = inf\n", ("[modules.totp]", "period")),
    "totp-window-negative": Broken("[modules.totp]\nwindow = -1\n", ("[modules.totp]", "window")),
    "totp-unknown-key": Broken("[modules.totp]\nperiodd = 30\n", ("[modules.totp]", "periodd")),
    "totp-issuer-empty": Broken('[modules.totp]\nissuer = ""\n', ("[modules.totp]", "issuer")),
    "totp-skew-huge": Broken("[modules.totp]\nskew_search_minutes = 1e12\n", ("[modules.totp]", "skew_search_minutes")),
    "totp-sealed-garbage": Broken('[modules.totp]\nissuer = "sealed:garbage"\n', ("[modules.totp]", "issuer")),
    "duo-on-without-credentials": Broken(DUO_ON, ("[modules.duo]", "client_id")),
    "duo-timeout-inf": Broken("[modules.duo]\nhttp_timeout = inf\n", ("[modules.duo]", "http_timeout")),
    "duo-ca-file-missing": Broken('[modules.duo]\nca_file = "missing.pem"\n', ("[modules.duo]", "ca_file")),
    "yubikey-cloud-without-credentials": Broken(YUBI_ON, ("[modules.yubikey]", "client_id")),
    "yubikey-timeout-zero": Broken("[modules.yubikey]\ntimeout = 0\n", ("[modules.yubikey]", "timeout")),
    "yubikey-retry-delay-nan": Broken("[modules.yubikey]\nretry_delay = nan\n", ("[modules.yubikey]", "retry_delay")),
    "yubikey-api-url-ftp": Broken('[modules.yubikey]\napi_urls = ["ftp://x"]\n', ("[modules.yubikey]", "api_urls")),
    "yubikey-keys-sealed-garbage": Broken('[modules.yubikey]\nkeys = "sealed:xyz"\n', ("[modules.yubikey]", "keys")),
    # the config path itself, and the environment
    "config-is-a-folder": Broken(None, ("folder",), prepare=lambda folder: (folder / "secmod.toml").mkdir()),
    "env-database-url-empty": Broken("", ("database_url",), env={"SECMOD_DATABASE_URL": ""},
                                     where="SECMOD_DATABASE_URL"),
    "env-lockout-inf": Broken("", ("lockout_minutes",), env={"SECMOD_THROTTLE__LOCKOUT_MINUTES": "inf"},
                              where="SECMOD_THROTTLE__LOCKOUT_MINUTES"),
    "env-port-text": Broken("", ("port",), env={"SECMOD_WEB__PORT": "eighty"}, where="SECMOD_WEB__PORT"),
    "env-force-clients-maybe": Broken("", ("force_clients",), env={"SECMOD_FORCE_CLIENTS": "maybe"},
                                      where="SECMOD_FORCE_CLIENTS"),
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


COMMANDS = {
    "check": lambda: ["check"],
    "status": lambda: ["status", "alice@example.com"],
    # A free port, never 8000: were a broken config accepted, serving would start there.
    "serve": lambda: ["serve", "--host", "127.0.0.1", "--port", str(_free_port())],
}


@contextmanager
def bounded(seconds: int) -> Iterator[None]:
    def give_up(signum: int, frame: object) -> None:
        raise TimeoutError(f"the command did not end within {seconds} s")

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("case", sorted(CORPUS))
def test_a_broken_configuration_is_one_clear_line_and_exit_2(
    case: str, command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = CORPUS[case]
    for name in [name for name in os.environ if name.upper().startswith("SECMOD_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "secmod.toml"
    if broken.prepare is not None:
        broken.prepare(tmp_path)
    if isinstance(broken.toml, bytes):
        config.write_bytes(broken.toml)
    elif broken.toml is not None:
        config.write_text('database_url = "sqlite:///secmod.db"\n' + broken.toml
                          if "database_url" not in broken.toml else broken.toml)
    for name, value in broken.env.items():
        monkeypatch.setenv(name, value)
    with bounded(RUN_BOUND_SECONDS):
        result = CliRunner().invoke(app, ["--config", str(config), *COMMANDS[command]()])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output and len(lines) == 1, result.output
    [line] = lines
    assert line.startswith("error: ")
    assert broken.where in line, line
    for name in broken.names:
        assert name in line, line


def _numeric_fields(model: type) -> Iterator[tuple[str, object]]:
    from pydantic import BaseModel

    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from ((f"{name}.{sub}", meta) for sub, meta in _numeric_fields(annotation))
        elif annotation in (int, float):
            yield name, info


def test_every_number_in_the_settings_has_bounds() -> None:
    """An unbounded number is how lockout_minutes = inf once rolled a lockout back."""
    import annotated_types
    import secmod_duo
    import secmod_totp
    import secmod_yubikey

    from secmod.settings import SecmodSettings

    unbounded = []
    for model in (SecmodSettings, secmod_totp.TotpSettings, secmod_duo.DuoSettings, secmod_yubikey.YubikeySettings):
        for name, info in _numeric_fields(model):
            kinds = {type(item) for item in info.metadata}  # type: ignore[attr-defined]
            if not (kinds & {annotated_types.Ge, annotated_types.Gt} and kinds & {annotated_types.Le, annotated_types.Lt}):
                unbounded.append(f"{model.__name__}.{name}")
    assert unbounded == []
