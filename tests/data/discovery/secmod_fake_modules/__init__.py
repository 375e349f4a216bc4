"""Fake security modules for tests/test_discovery.py (installed as secmod-fake-modules 1.2.3)."""

IMPORTED: list[str] = []
"""Each submodule appends its name when imported, so a test can see what was loaded."""
