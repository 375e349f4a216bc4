"""A module written for a hook contract this secmod does not speak."""

from secmod.hookspecs import ModuleInfo, hookimpl

from . import IMPORTED

IMPORTED.append("ancient")


@hookimpl
def configure():
    return ModuleInfo(name="ancient", friendly_name="Ancient", short_description="Too old.", contract=">=0.1,<1")
