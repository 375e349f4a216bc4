"""A module with a misspelt hook: without check_pending, `verfy` would never be called."""

from secmod.hookspecs import ModuleInfo, Rejected, hookimpl

from . import IMPORTED

IMPORTED.append("typo")


@hookimpl
def configure():
    return ModuleInfo(name="typo", friendly_name="Typo", short_description="Misspells a hook.")


@hookimpl
def verfy(request):
    return Rejected(reason="never called")
