"""The secmod command line, end to end: a real process for enrolment, CliRunner for the rest."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pyotp
import pytest
from secmod.host.cli import app
from typer.testing import CliRunner

runner = CliRunner()


@pytest.fixture
def config(tmp_path, monkeypatch):
    path = tmp_path / "secmod.toml"
    path.write_text(
        "# test config\n"
        f'database_url = "sqlite:///{tmp_path / "cli.db"}"\n'
        '[sealing]\nkey_file = "cli.keys"\n'
        '[modules.totp]\nissuer = "Example Co"\n'
    )
    monkeypatch.setenv("SECMOD_CONFIG", str(path))
    return path


def secmod(*args: str, input: str | None = None):
    return runner.invoke(app, list(args), input=input, catch_exceptions=False)


def enroll(user: str, config) -> tuple[pyotp.TOTP, str]:
    """Enrol like a person at a terminal: read the secret, answer with a code."""
    process = subprocess.Popen(
        [sys.executable, "-m", "secmod.host.cli", "--config", str(config), "enroll", user],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("URI:"):
            break
    secret = next(line.split()[1] for line in lines if line.startswith("Secret:"))
    uri = next(line.split()[1] for line in lines if line.startswith("URI:"))
    assert uri.startswith("otpauth://totp/Example%20Co:") and pyotp.parse_uri(uri).secret == secret
    totp = pyotp.TOTP(secret)
    output, errors = process.communicate(totp.now() + "\n", timeout=60)
    assert process.returncode == 0, errors
    assert "Two-Factor Authentication is now enabled" in output
    backup = re.search(r"Your Backup Code is: ([0-9a-f]{4}(?: [0-9a-f]{4}){3})", output).group(1)
    return totp, backup


def test_enrol_verify_recover_status_disable(config):
    totp, backup = enroll("alice@example.com", config)
    next_code = totp.at(time.time() + 30)
    ok = secmod("verify", "alice@example.com", "--code", next_code)
    assert ok.exit_code == 0 and "accepted" in ok.output
    again = secmod("verify", "alice@example.com", "--code", next_code)
    assert again.exit_code == 1 and "You have 4 attempts remaining." in again.output
    recovered = secmod("recover", "alice@example.com", "--answer", f"code={backup}")
    assert recovered.exit_code == 0 and "Your New Backup Code is:" in recovered.output
    status = secmod("status", "alice@example.com")
    assert "totp, enrolled" in status.output and "backup codes left: 1" in status.output
    listing = secmod("modules")
    assert re.search(r"totp\s+Time Based Tokens\s+secmod-totp\s+\S+\s+on\s+on\s+1", listing.output)
    audit = secmod("audit", "--user", "alice@example.com")
    assert "recover" in audit.output and backup.split()[0] not in audit.output
    assert secmod("disable", "alice@example.com", "--yes").exit_code == 0
    assert "no second factor" in secmod("status", "alice@example.com").output


def test_keys_rotate_keeps_enrolments_working(config):
    totp, _ = enroll("bob@example.com", config)
    old = (config.parent / "cli.keys").read_text()
    sealed = secmod("seal", "totp", "issuer", "--write", input="Sealed Co\n")
    assert sealed.exit_code == 0, sealed.output
    assert "# test config" in config.read_text() and "sealed:" in config.read_text()
    rotated = secmod("keys", "rotate")
    assert rotated.exit_code == 0 and "re-sealed 1 stored values and 1 settings" in rotated.output
    assert (config.parent / "cli.keys").read_text() != old
    assert secmod("verify", "bob@example.com", "--code", totp.at(time.time() + 30)).exit_code == 0
    assert "Sealed Co" not in config.read_text()


def test_check_and_time(config):
    result = secmod("check")
    assert result.exit_code == 0 and "totp: ok (No configuration required.)" in result.output
    assert "UTC:" in secmod("time").output


def test_errors_are_one_line_without_traceback(config):
    config.write_text("[modules.totp]\ndigits = 9\n")
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 2
    assert "digits: Input should be 6 or 8" in result.output and "Traceback" not in result.output
    missing = runner.invoke(app, ["--config", str(config.parent / "nope.toml"), "modules"])
    assert missing.exit_code == 2 and "config file not found" in missing.output


def test_recover_asks_for_the_fields_the_method_declares(config):
    totp, backup = enroll("carol@example.com", config)
    # TOTP's resync declares `code` and `next_code`: asked in order, with its prompt shown.
    # The phone runs five minutes fast.
    now = time.time()
    asked = secmod("recover", "carol@example.com", "--method", "resync",
                   input=f"{totp.at(now + 300)}\n{totp.at(now + 330)}\n")
    assert "Enter two consecutive codes" in asked.output
    assert "Code:" in asked.output and "Next code:" in asked.output
    assert asked.exit_code == 0, asked.output
    unknown = secmod("recover", "carol@example.com", "--method", "resync", "--answer", "pin=1")
    assert unknown.exit_code == 1 and "asks for no field pin" in unknown.output and "code, next_code" in unknown.output
    nothing = secmod("recover", "carol@example.com", "--method", "dance")
    assert nothing.exit_code == 1 and "backup_code, resync" in nothing.output
    malformed = secmod("recover", "carol@example.com", "--answer", "code")
    assert malformed.exit_code == 1 and "FIELD=VALUE" in malformed.output
    # The backup code is never echoed when typed.
    typed = secmod("recover", "carol@example.com", input=backup + "\n")
    assert typed.exit_code == 0 and backup not in typed.output


def test_modules_add_their_commands_unless_the_settings_block_them(tmp_path):
    from secmod.host.cli import add_module_commands

    listed = runner.invoke(add_module_commands([]), ["--help"])
    assert listed.exit_code == 0 and "yubikey" in listed.output
    assert "import-keys" in runner.invoke(add_module_commands([]), ["yubikey", "--help"]).output
    config = tmp_path / "secmod.toml"
    config.write_text('[loading]\nblock = ["yubikey"]\n')
    blocked = runner.invoke(add_module_commands(["--config", str(config)]), ["--help"])
    assert blocked.exit_code == 0 and "yubikey" not in blocked.output
    # The core app itself never gains a module's commands.
    assert "yubikey" not in secmod("--help").output


def test_module_commands_run_from_the_installed_secmod_command(tmp_path):
    config = tmp_path / "secmod.toml"
    config.write_text("[modules.yubikey]\n")
    export = tmp_path / "export.csv"
    export.write_text("1,vvcccccccccc,0011,zz,,,\n")
    done = subprocess.run(
        [sys.executable, "-m", "secmod.host.cli", "--config", str(config), "yubikey", "import-keys", str(export)],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2 and "line 1" in done.stderr and "Traceback" not in done.stderr


def test_enroll_picks_the_only_enabled_module_and_otherwise_asks(config):
    config.write_text(config.read_text() + '[modules.yubikey]\nclients = true\nclient_id = "1"\n'
                      'secret_key = "AAECAwQFBgcICQoLDA0ODxAREhM="\n')
    several = secmod("enroll", "carol@example.com")
    assert several.exit_code == 1
    assert "several modules are enabled for clients; choose one with --module: totp, yubikey" in several.output
    config.write_text(config.read_text().replace('issuer = "Example Co"', 'issuer = "Example Co"\nclients = false'))
    only = secmod("enroll", "carol@example.com", input="000000\n")
    assert "Touch your YubiKey" in only.output  # the only module left for clients, no flag needed
    config.write_text(config.read_text().replace("[modules.yubikey]\nclients = true", "[modules.yubikey]\nclients = false"))
    none = secmod("enroll", "carol@example.com")
    assert none.exit_code == 1 and "no module is enabled for clients" in none.output


def test_a_lost_key_file_stops_every_command_with_one_line(config):
    enroll("carol@example.com", config)
    (config.parent / "cli.keys").unlink()
    for command in (["status", "carol@example.com"], ["verify", "carol@example.com", "--code", "000000"], ["check"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, (command, result.output)
        assert "sealed with keys" in result.output and "restore that key file" in result.output
        assert "Traceback" not in result.output
