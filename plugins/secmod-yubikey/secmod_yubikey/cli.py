"""``secmod-yubikey import-keys``: bring local-mode keys from a programming tool's export.

The keys are merged with those already configured, and the whole table is written to
``secmod.toml`` sealed, as ``[modules.yubikey] keys = "sealed:..."``. Nothing secret is
printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from secmod.host.sealing import SEALED_PREFIX, KeyRing
from secmod.settings import ConfigError, config_path, load_settings, set_module_setting

from .keys import KeyImportError, dump_keys, load_key_table, merge_keys, parse_key_export

app = typer.Typer(help="YubiKey module tools.", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@app.callback()
def _main() -> None:
    """YubiKey module tools."""


@app.command("import-keys")
def import_keys(
    export: Annotated[Path, typer.Argument(help="ykman --config-output CSV or a Personalization Tool log.")],
    config: Annotated[Path | None, typer.Option("--config", "-c", envvar="SECMOD_CONFIG")] = None,
    replace: Annotated[bool, typer.Option(help="Replace keys already configured with the same public id.")] = False,
) -> None:
    """Import local-mode YubiKey secrets into secmod.toml, sealed."""
    try:
        settings = load_settings(config)
        ring = KeyRing.open(settings.resolve(settings.sealing.key_file))
        current = settings.modules.get("yubikey", {}).get("keys") or {}
        if isinstance(current, str) and current.startswith(SEALED_PREFIX):
            current = ring.unseal_setting("yubikey", "keys", current)
        merged = merge_keys(load_key_table(current), parse_key_export(export.read_text()), replace=replace)
    except (ConfigError, KeyImportError, OSError) as error:
        typer.secho(f"error: {error}", err=True, fg="red")
        raise typer.Exit(2) from None
    path = config_path(config)
    set_module_setting(path, "yubikey", "keys", ring.seal_setting("yubikey", "keys", dump_keys(merged)))
    typer.echo(f"{len(merged)} keys configured, sealed into {path}: {', '.join(sorted(merged))}")


def main() -> None:
    app()
