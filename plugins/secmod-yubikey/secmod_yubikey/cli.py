"""``secmod yubikey import-keys``: bring local-mode keys from a programming tool's export.

The keys are merged with those already configured and written to ``secmod.toml`` as
``[modules.yubikey.keys.<public id>]``, the AES key and private id each sealed on its
own (a table sealed whole by an older version is still read). Nothing secret is
printed. The command joins the ``secmod`` command line through ``register_commands``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from secmod.host import ConfigError, ModuleSettingsFile, SecmodError

from .keys import KeyImportError, LocalKey, load_key_table, merge_keys, read_key_export

__all__ = ["import_keys"]


def import_keys(
    export: Annotated[
        Path, typer.Argument(help="A Yubico format export (ykman --config-output) or a Personalization Tool log.")
    ],
    config: Annotated[Path | None, typer.Option("--config", "-c", envvar="SECMOD_CONFIG")] = None,
    replace: Annotated[bool, typer.Option(help="Replace keys already configured with the same public id.")] = False,
) -> None:
    """Import local-mode YubiKey secrets into secmod.toml, each sealed."""
    try:
        table = ModuleSettingsFile("yubikey", config)
        exported = read_key_export(export.read_text())
        merged = merge_keys(load_key_table(table.get("keys") or {}), exported.keys, replace=replace)
        table.set("keys", {public_id: _sealed(table, public_id, key) for public_id, key in sorted(merged.items())})
    except (ConfigError, SecmodError, KeyImportError, OSError) as error:
        typer.secho(f"error: {error}", err=True, fg="red")
        raise typer.Exit(2) from None
    for note in exported.skipped:
        typer.echo(f"note: {note}")
    typer.echo(f"{len(merged)} keys configured, sealed into {table.path}: {', '.join(sorted(merged))}")


def _sealed(table: ModuleSettingsFile, public_id: str, key: LocalKey) -> dict[str, str]:
    place = f"keys.{public_id}"
    entry = {
        "aes_key": table.seal(f"{place}.aes_key", key.aes_key.get_secret_value()),
        "private_id": table.seal(f"{place}.private_id", key.private_id),
    }
    return entry | ({"owner": key.owner} if key.owner else {})
