"""Render docs/diagrams/*.mmd (Mermaid) to the SVG files the pages show.

The docs site must build and read offline, with no script from a CDN, so the diagrams
are drawn once, here, and the SVG files are committed beside their sources::

    npm pack mermaid@11 && tar xzf mermaid-*.tgz package/dist/mermaid.min.js
    python docs/render_diagrams.py --mermaid package/dist/mermaid.min.js
    python docs/render_diagrams.py --check    # exit 1 when an SVG is missing or stale

Rendering runs Mermaid in headless Chromium (Playwright, from secmod's ``test`` extra;
``$SECMOD_CHROMIUM`` or /usr/bin/chromium). Each SVG records the SHA-256 of the source
it was drawn from, so ``--check`` (run by tests/test_docs.py) needs neither a browser nor
Mermaid to see that a diagram was edited and not re-rendered.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from pathlib import Path

DIAGRAMS = Path(__file__).with_name("diagrams")
_STAMP = re.compile(r"<!-- source-sha256: ([0-9a-f]{64}) -->")


def source_digest(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def stale(directory: Path = DIAGRAMS) -> list[str]:
    """Each diagram whose SVG is missing or was drawn from another version of its source."""
    problems = []
    for source in sorted(directory.glob("*.mmd")):
        svg = source.with_suffix(".svg")
        if not svg.exists():
            problems.append(f"{svg.name} is missing")
            continue
        stamp = _STAMP.search(svg.read_text())
        if stamp is None or stamp.group(1) != source_digest(source.read_text()):
            problems.append(f"{svg.name} is older than {source.name}")
    return problems


def render(mermaid_js: Path, directory: Path = DIAGRAMS) -> list[Path]:
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("SECMOD_CHROMIUM", "/usr/bin/chromium")
    written = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox"])
        page = browser.new_page()
        page.set_content("<!doctype html><html><body></body></html>")
        page.add_script_tag(content=mermaid_js.read_text())
        page.evaluate("mermaid.initialize({startOnLoad: false, theme: 'neutral', securityLevel: 'strict'})")
        for index, source in enumerate(sorted(directory.glob("*.mmd"))):
            text = source.read_text()
            svg = page.evaluate("async ([id, text]) => (await mermaid.render(id, text)).svg", [f"d{index}", text])
            target = source.with_suffix(".svg")
            target.write_text(f"<!-- source-sha256: {source_digest(text)} -->\n{svg}\n")
            written.append(target)
        browser.close()
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--mermaid", type=Path, help="path to mermaid.min.js (npm package mermaid, dist/)")
    group.add_argument("--check", action="store_true", help="only check that every SVG is current")
    args = parser.parse_args()
    if args.check:
        problems = stale()
        for problem in problems:
            print(f"docs/diagrams: {problem}; run python docs/render_diagrams.py --mermaid ...", file=sys.stderr)
        return 1 if problems else 0
    for path in render(args.mermaid):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
