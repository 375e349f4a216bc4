"""The pluggy project name and the marker modules decorate their hooks with."""

import pluggy

PROJECT = "secmod"
CONTRACT_VERSION = "1.1"
"""The version of the hook contract this host speaks; modules declare a range."""

hookimpl = pluggy.HookimplMarker(PROJECT)
