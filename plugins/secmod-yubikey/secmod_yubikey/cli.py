"""``secmod-yubikey import-keys``: bring local-mode keys from a programming tool's export.

The keys are merged with those already configured and written to ``secmod.toml`` as
``[modules.yubikey.keys.<public id>]``, the AES key and private id each sealed on its
own. Nothing secret is printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from secmod.host.sealing import KeyRing, SealError, open_sealed_settings
from secmod.settings import ConfigError, config_path, load_settings, set_module_setting

from .keys import KeyImportError, LocalKey, load_key_table, merge_keys, read_key_export

app = typer.Typer(help="YubiKey module tools.", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@app.callback()
def _main() -> None:
    """YubiKey module tools."""


@app.command("import-keys")
def import_keys(
    export: Annotated[Path, typer.Argument(help="A Yubico format export (ykman --config-output) or a Personalization Tool log.")],
    config: Annotated[Path | None, typer.Option("--config", "-c", envvar="SECMOD_CONFIG")] = None,
    replace: Annotated[bool, typer.Option(help="Replace keys already configured with the same public id.")] = False,
) -> None:
    """Import local-mode YubiKey secrets into secmod.toml, each sealed."""
    try:
        settings = load_settings(config)
        ring = KeyRing.open(settings.resolve(settings.sealing.key_file))
        current = settings.modules.get("yubikey", {}).get("keys") or {}
        current = open_sealed_settings(ring, "yubikey", current, ("keys",))
        export_read = read_key_export(export.read_text())
        merged = merge_keys(load_key_table(current), export_read.keys, replace=replace)
    except (ConfigError, KeyImportError, SealError, OSError) as error:
        typer.secho(f"error: {error}", err=True, fg="red")
        raise typer.Exit(2) from None
    for note in export_read.skipped:
        typer.echo(f"note: {note}")
    path = config_path(config)
    set_module_setting(path, "yubikey", "keys", {
        public_id: _sealed(ring, public_id, key) for public_id, key in sorted(merged.items())
    })
    typer.echo(f"{len(merged)} keys configured, sealed into {path}: {', '.join(sorted(merged))}")


def _sealed(ring: KeyRing, public_id: str, key: LocalKey) -> dict[str, str]:
    place = f"keys.{public_id}"
    entry = {
        "aes_key": ring.seal_setting("yubikey", f"{place}.aes_key", key.aes_key.get_secret_value()),
        "private_id": ring.seal_setting("yubikey", f"{place}.private_id", key.private_id),
    }
    return entry | ({"owner": key.owner} if key.owner else {})


def main() -> None:
    app()
