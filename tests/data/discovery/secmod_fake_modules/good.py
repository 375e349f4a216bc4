"""A module that loads: it only describes itself."""

from secmod.hookspecs import ModuleInfo, hookimpl

from . import IMPORTED

IMPORTED.append("good")


@hookimpl
def configure():
    return ModuleInfo(name="good", friendly_name="Good", short_description="Loads fine.")


class _Dupe:
    @hookimpl
    def configure(self):
        return ModuleInfo(name="dupe", friendly_name="Dupe", short_description="Claimed twice.")


dupe = _Dupe()
