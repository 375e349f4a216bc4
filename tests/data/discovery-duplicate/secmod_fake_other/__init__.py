"""A second distribution (secmod-fake-other 0.5.0) claiming the name `dupe`."""

from secmod.hookspecs import ModuleInfo, hookimpl


class _Dupe:
    @hookimpl
    def configure(self):
        return ModuleInfo(name="dupe", friendly_name="Other dupe", short_description="Claimed twice.")


dupe = _Dupe()
