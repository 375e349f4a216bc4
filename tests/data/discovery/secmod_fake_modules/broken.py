"""A module whose package is broken: a dependency is missing."""

from . import IMPORTED

IMPORTED.append("broken")

import secmod_fake_dependency_that_is_not_installed  # noqa: E402,F401
