"""A module with a misspelt hook: without check_pending, `verfy` would never be called."""

from secmod.hookspecs import Challenge, ModuleInfo, Prompt, Rejected, SetupComplete, hookimpl

from . import IMPORTED

IMPORTED.append("typo")


@hookimpl
def configure():
    return ModuleInfo(name="typo", friendly_name="Typo", short_description="Misspells a hook.")


@hookimpl
def verfy(request):
    return Rejected(reason="never called")


@hookimpl
def setup_user(request):
    return SetupComplete()


@hookimpl
def challenge(request):
    return Challenge(prompt=Prompt(message="Nothing to enter"))


@hookimpl
def verify(request):
    return Rejected(reason="never")
