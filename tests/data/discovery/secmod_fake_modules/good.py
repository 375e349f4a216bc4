"""A module that loads: the required hooks, refusing every answer."""

from secmod.hookspecs import Challenge, ModuleInfo, Prompt, Rejected, SetupComplete, hookimpl

from . import IMPORTED

IMPORTED.append("good")


@hookimpl
def configure():
    return ModuleInfo(name="good", friendly_name="Good", short_description="Loads fine.")


@hookimpl
def setup_user(request):
    return SetupComplete()


@hookimpl
def challenge(request):
    return Challenge(prompt=Prompt(message="Nothing to enter"))


@hookimpl
def verify(request):
    return Rejected(reason="never")


class _Dupe:
    @hookimpl
    def configure(self):
        return ModuleInfo(name="dupe", friendly_name="Dupe", short_description="Claimed twice.")

    setup_user = staticmethod(setup_user)
    challenge = staticmethod(challenge)
    verify = staticmethod(verify)


dupe = _Dupe()
