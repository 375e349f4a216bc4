"""The documentation is tested: generated parts are current, quotes are real, every
setting and command it names exists, and the site builds with warnings as errors."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
from pydantic import BaseModel

from secmod.hookspecs import specs
from secmod.settings import SecmodSettings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLE = DOCS / "examples" / "secmod-email"
OUR_PAGES = (
    "index", "operator-guide", "settings", "module-authors", "tutorial", "lifecycle", "testing-modules", "embedding",
    "api",
)
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def _generator() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("gen_hooks", DOCS / "gen_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- hook reference ----------------------------------------------------------------


def test_hook_reference_is_current() -> None:
    assert (DOCS / "hooks.md").read_text() == _generator().render(), (
        "docs/hooks.md is out of date: run `python docs/gen_hooks.py`"
    )


@pytest.mark.parametrize("hook", specs.__all__)
def test_every_hook_is_documented_with_its_signature(hook: str) -> None:
    page = (DOCS / "hooks.md").read_text()
    gen = _generator()
    assert f"## `{hook}`" in page, f"hook {hook} is missing from docs/hooks.md"
    assert gen._signature(getattr(specs, hook)) in page, f"the signature of {hook} in docs/hooks.md has drifted"


def test_a_hook_without_a_docstring_cannot_be_documented() -> None:
    gen = _generator()
    fake_specs = types.ModuleType("fake_specs")
    fake_specs.__all__ = ["configure", "shiny_new_hook"]
    fake_specs.configure = specs.configure

    def shiny_new_hook(request: object) -> None:
        pass

    fake_specs.shiny_new_hook = shiny_new_hook
    fake_types = types.ModuleType("fake_types")
    fake_types.__all__ = []
    with pytest.raises(gen.Undocumented, match="hook 'shiny_new_hook' has no docstring"):
        gen.render(fake_specs, fake_types)


# -- tutorial ----------------------------------------------------------------------


def test_tutorial_quotes_the_example_package_verbatim() -> None:
    files = [p.read_text() for p in EXAMPLE.rglob("*") if p.suffix in {".py", ".toml", ".md"} and p.is_file()]
    quoted = [(lang, body) for lang, body in FENCE.findall((DOCS / "tutorial.md").read_text()) if lang in {"python", "toml"}]
    assert len(quoted) >= 12, "the tutorial should walk through the whole package"
    for lang, body in quoted:
        assert any(body.rstrip("\n") in text for text in files), f"this {lang} block is not in docs/examples:\n{body}"


def test_tutorial_covers_every_hook_the_example_implements() -> None:
    tutorial = (DOCS / "tutorial.md").read_text()
    source = (EXAMPLE / "secmod_email" / "__init__.py").read_text()
    implemented = re.findall(r"@hookimpl\n    def (\w+)", source)
    assert implemented and all(f"    def {hook}(" in tutorial for hook in implemented)


# -- settings reference --------------------------------------------------------------


def _sections(page: str) -> dict[str, str]:
    """Heading line -> the text under it."""
    parts = re.split(r"^## (.+)$", page, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def _documented_keys(sections: dict[str, str], heading: str) -> set[str]:
    (body,) = [text for title, text in sections.items() if title.startswith(heading)]
    return set(re.findall(r"^\| `(\w+)` \|", body, flags=re.M))


def _load_email_settings(monkeypatch: pytest.MonkeyPatch) -> type[BaseModel]:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from secmod_email import EmailSettings

    return EmailSettings


def test_settings_reference_lists_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from secmod_totp import TotpSettings

    sections = _sections((DOCS / "settings.md").read_text())
    fields = SecmodSettings.model_fields
    nested = {name for name, f in fields.items() if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)}
    top_level = set(fields) - nested - {"modules", "config_file"}
    assert _documented_keys(sections, "Top-level keys") == top_level
    for name in nested:
        assert _documented_keys(sections, f"`[{name}]`") == set(fields[name].annotation.model_fields), name
    assert _documented_keys(sections, "`[modules.totp]`") == set(TotpSettings.model_fields)
    email_settings = _load_email_settings(monkeypatch)
    assert _documented_keys(sections, "`[modules.email]`") == set(email_settings.model_fields)


# -- commands --------------------------------------------------------------------------


def _cli_commands() -> set[str]:
    from secmod.host.cli import add_module_commands

    app = add_module_commands([])  # secmod's commands and the installed modules' own
    commands = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}
    for group in app.registered_groups:
        commands |= {f"{group.name} {c.name or c.callback.__name__}" for c in group.typer_instance.registered_commands}
    return commands


def test_pages_name_only_commands_that_exist() -> None:
    commands = _cli_commands()
    for page in OUR_PAGES:
        text = (DOCS / f"{page}.md").read_text()
        named = re.findall(r"`secmod ([a-z][a-z-]*(?: [a-z][a-z-]*)?)", text)
        for _, block in FENCE.findall(text):
            named += re.findall(r"^secmod ([a-z][a-z-]*(?: [a-z][a-z-]*)?)", block, flags=re.M)
        for phrase in named:
            first, _, second = phrase.partition(" ")
            assert first in commands or phrase in commands, f"docs/{page}.md names `secmod {phrase}`, which does not exist"


# -- the site ---------------------------------------------------------------------------


def test_site_builds_strictly(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--quiet", "-d", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    site = tmp_path / "site"
    # Offline: no script, stylesheet or image from another site (the theme's highlight.js
    # CDN is off; code is coloured by Pygments at build time).
    remote = [
        f"{page.relative_to(site)}: {found}"
        for page in site.rglob("*.html")
        for found in re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="(?:https?:)?//[^"]+"', page.read_text())
    ]
    assert not remote, remote
    # The lifecycle diagrams are pictures, not Mermaid source.
    lifecycle = (site / "lifecycle" / "index.html").read_text()
    assert "sequenceDiagram" not in lifecycle and lifecycle.count('.svg"') >= 3
    # The API reference is generated from the docstrings.
    api = (site / "api" / "index.html").read_text()
    for documented in ("begin_challenge", "challenge_open", "recovery_methods", "StoreUnavailable", "RequestContext"):
        assert documented in api, f"{documented} is missing from the API reference"


def test_diagrams_are_rendered_from_their_current_sources() -> None:
    spec = importlib.util.spec_from_file_location("render_diagrams", DOCS / "render_diagrams.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.stale() == [], "run python docs/render_diagrams.py --mermaid path/to/mermaid.min.js"
    assert list(module.DIAGRAMS.glob("*.mmd")), "no diagram sources found"
    for page in DOCS.glob("*.md"):
        assert "```mermaid" not in page.read_text(), f"docs/{page.name}: draw the diagram in docs/diagrams/"


def test_every_page_of_ours_is_in_the_nav() -> None:
    # Pages other people add are only reported by mkdocs until the nav lists them.
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in [*OUR_PAGES, "hooks"]:
        assert f"{page}.md" in nav, f"docs/{page}.md is not in the nav of mkdocs.yml"
