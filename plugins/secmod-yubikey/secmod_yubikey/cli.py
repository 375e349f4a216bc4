"""``secmod yubikey import-keys``: bring local-mode keys from a programming tool's export.

The keys are merged with those already configured, and the whole table is written to
``secmod.toml`` sealed, as ``[modules.yubikey] keys = "sealed:..."``. Nothing secret is
printed. The command joins the ``secmod`` command line through ``register_commands``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from secmod.host import ConfigError, ModuleSettingsFile, SecmodError

from .keys import KeyImportError, dump_keys, load_key_table, merge_keys, parse_key_export

__all__ = ["import_keys"]


def import_keys(
    export: Annotated[Path, typer.Argument(help="ykman --config-output CSV or a Personalization Tool log.")],
    config: Annotated[Path | None, typer.Option("--config", "-c", envvar="SECMOD_CONFIG")] = None,
    replace: Annotated[bool, typer.Option(help="Replace keys already configured with the same public id.")] = False,
) -> None:
    """Import local-mode YubiKey secrets into secmod.toml, sealed."""
    try:
        table = ModuleSettingsFile("yubikey", config)
        merged = merge_keys(load_key_table(table.get("keys") or {}), parse_key_export(export.read_text()), replace=replace)
        table.set_sealed("keys", dump_keys(merged))
    except (ConfigError, SecmodError, KeyImportError, OSError) as error:
        typer.secho(f"error: {error}", err=True, fg="red")
        raise typer.Exit(2) from None
    typer.echo(f"{len(merged)} keys configured, sealed into {table.path}: {', '.join(sorted(merged))}")
