"""A module the settings block: importing it at all is the failure under test."""

from . import IMPORTED

IMPORTED.append("blocked")
raise RuntimeError("secmod imported a blocked module")
