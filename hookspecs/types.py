"""The typed, frozen objects that cross the boundary between the host and a module.

Everything a hook receives or returns is defined here. Fields that can carry a secret,
a code or module state are excluded from ``repr`` so that they never reach a log line or
a traceback by accident.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from pathlib import Path
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo
from pydantic import Field as PydanticField

# CONFIG_DIR and ConfigPath are exported by secmod.hookspecs too; they are not types
# that cross a hook, so the hook reference (generated from this list) leaves them out.
__all__ = [
    "BACKUP_CODE_METHOD",
    "Accepted",
    "Activation",
    "ActivateRequest",
    "Audience",
    "BrowserCeremony",
    "Challenge",
    "ChallengeRequest",
    "DescribeRequest",
    "Field",
    "ForgetRequest",
    "LogRedaction",
    "ModuleInfo",
    "ModuleSettings",
    "Prompt",
    "Provisioning",
    "RecoverRequest",
    "RecoveryMethod",
    "Rejected",
    "SettingsT",
    "SetupComplete",
    "SetupPrompt",
    "SetupRequest",
    "URLLIB3_LOGGERS",
    "User",
    "Verdict",
    "VerifyRequest",
    "frozen_mapping",
]


def frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A read-only copy of ``value`` (empty when ``None``)."""
    return MappingProxyType(dict(value or {}))


def _freeze(instance: object, *names: str) -> None:
    # Frozen dataclasses still hold whatever mapping they were given; copy it read-only
    # so a module cannot change the host's copy behind its back.
    for name in names:
        value = getattr(instance, name)
        if value is not None and not isinstance(value, MappingProxyType):
            object.__setattr__(instance, name, frozen_mapping(value))


class Audience(enum.StrEnum):
    """Who is logging in: WHMCS keeps clients and administrators apart."""

    CLIENT = "client"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    """The person behind the login, as the host application knows them.

    :param id: the host application's stable identifier for this person.
    :param audience: client or admin; enrolments of the two never mix.
    :param email: the login identifier WHMCS uses as the account label (TOTP) and the
        Duo username.
    :param name: a display name, for greetings only.
    """

    id: str
    audience: Audience
    email: str = ""
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise ValueError("User.id must be a non-empty string")
        object.__setattr__(self, "audience", Audience(self.audience))

    @property
    def label(self) -> str:
        """How the person is named to an authenticator app or a provider.

        The email when the host application gave one, else the id. TOTP puts it in the
        otpauth URI (the account name the app shows); Duo uses it as the username.
        """
        return self.email or self.id


CONFIG_DIR = "config_dir"
"""The validation context key under which the host gives the config file's folder."""


def _next_to_config(value: str | None, info: ValidationInfo) -> str | None:
    if value is None or not value.strip():
        return None
    path = Path(value.strip()).expanduser()
    folder = (info.context or {}).get(CONFIG_DIR)
    if not path.is_absolute() and folder is not None:
        path = Path(folder) / path
    return str(path)


ConfigPath = Annotated[str, AfterValidator(_next_to_config)]
"""A file path in a module's settings (a CA bundle, say). A relative path is taken from
the folder of ``secmod.toml``, not the working folder the host was started in; blank
means unset (declare the field ``ConfigPath | None``). The module's own validators see
the resolved path.

.. versionadded:: 1.1
"""


class ModuleSettings(BaseModel):
    """Base of every module's settings model, validated from ``[modules.NAME]``.

    ``clients`` and ``admins`` mirror WHMCS's "Enable for use by Clients" and "Enable
    for use by Administrative Users"; ``fail_mode`` is the operator's choice for provider
    outages. Declare secrets as ``pydantic.SecretStr``: the
    host seals them at rest, masks them in forms and never shows them back.

    ``Field(title=..., description=...)`` gives each setting its label and help text on
    the admin form. Bound every number (``ge``/``le``): a setting is operator input.
    Declare file paths as :data:`ConfigPath`.

    The host validates the model with the pydantic validation context
    ``{"base_url": "<[web] base_url>"}`` (contract 1.1), so a validator can derive a
    default from the site's public address (WebAuthn's relying party, a callback URL);
    anything else that validates it may pass no context, so treat it as optional.
    """

    # Pydantic puts rejected values in str(ValidationError); a setting may be a secret.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    clients: bool = False
    admins: bool = False
    fail_mode: Literal["closed", "open"] = PydanticField(
        default="closed", title="When the provider is down",
        description="closed: only a backup code gets in while the provider is unreachable. "
        "open: let the person in without the second factor, audited as fail_open.")
    """What a declared provider outage (:class:`ProviderUnavailable`) does: ``closed``
    refuses (the backup code still works), ``open`` lets the person in, audited as
    ``fail_open``. A crash always refuses, whatever this says. Added in contract 1.1."""

    def enabled_for(self, audience: Audience) -> bool:
        return self.clients if Audience(audience) is Audience.CLIENT else self.admins


URLLIB3_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry", "urllib3.poolmanager")
"""urllib3's loggers that write request URLs, query strings included (requests uses urllib3)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LogRedaction:
    """A secret that a library the module uses may write to its log, for the host to mask.

    Added in contract 1.1. The host installs one filter on each logger named here (the
    same filter for every module, so one module's rewrite cannot hide a record from
    another's pattern); modules never touch logging configuration themselves.

    :param pattern: a regular expression; every match in a record's formatted message
        is replaced by ``[redacted]``. Keep the context outside the match with a
        lookbehind, e.g. ``(?<=otp=)[^&\\s]+``.
    :param loggers: the loggers whose records are masked (a filter sees only its own
        logger's records, not its children's); by default urllib3's three that write
        request URLs, query strings included: each request at DEBUG, retries, redirects.
    """

    pattern: str
    loggers: tuple[str, ...] = URLLIB3_LOGGERS

    def __post_init__(self) -> None:
        try:
            re.compile(self.pattern)
        except (re.error, TypeError) as error:
            raise ValueError(f"LogRedaction.pattern {self.pattern!r} is not a regular expression: {error}") from None
        if isinstance(self.loggers, str) or not all(isinstance(name, str) and name for name in self.loggers):
            raise ValueError("LogRedaction.loggers must be a tuple of logger names")
        object.__setattr__(self, "loggers", tuple(self.loggers))


@dataclass(frozen=True, slots=True, kw_only=True)
class ModuleInfo:
    """What ``configure`` returns: who the module is and what it needs.

    :param name: the module's name; must equal its entry point name. It is stripped and
        lower-cased here (``"Email"`` becomes ``"email"``), so the entry point and the
        ``[modules.NAME]`` table use the lower-case form.
    :param friendly_name: WHMCS ``FriendlyName``, e.g. "Time Based Tokens".
    :param short_description: one line for the "choose a method" list.
    :param settings_model: a :class:`ModuleSettings` subclass for ``[modules.NAME]``.
    :param description: a longer text for the admin page.
    :param contract: the range of hook contract versions the module supports, as a
        PEP 440 specifier (``">=1,<2"``); the host refuses a module whose range
        excludes :data:`secmod.hookspecs.CONTRACT_VERSION`.
    :param recovery_methods: the ways back in that the module's ``recover`` serves
        besides the host's backup codes, each a :class:`RecoveryMethod` whose prompt the
        host renders (CLI, web pages). Contract 1.0 modules list plain names
        (``("resync",)``); the host still reads them, asking for ``code`` and
        ``next_code`` as 1.0 hosts did (:meth:`RecoveryMethod.from_name`).
    :param redirects: True when the challenge sends the browser away (Duo); hosts
        that cannot redirect (the CLI) then refuse the module cleanly.
    :param log_redactions: secrets the module's libraries may log (contract 1.1); the
        host masks them, see :class:`LogRedaction`.
    """

    name: str
    friendly_name: str
    short_description: str
    settings_model: type[ModuleSettings] = ModuleSettings
    description: str = ""
    contract: str = ">=1,<2"
    recovery_methods: tuple[RecoveryMethod, ...] = ()
    redirects: bool = False
    log_redactions: tuple[LogRedaction, ...] = ()

    def __post_init__(self) -> None:
        name = self.name.strip().lower() if isinstance(self.name, str) else None
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"ModuleInfo.name must be a simple lowercase name, got {self.name!r}")
        object.__setattr__(self, "name", name)
        if not (isinstance(self.settings_model, type) and issubclass(self.settings_model, ModuleSettings)):
            raise TypeError(f"module {name!r}: settings_model must subclass ModuleSettings")
        object.__setattr__(self, "recovery_methods", _recovery_methods(name, self.recovery_methods))

    def recovery_method(self, name: str) -> RecoveryMethod | None:
        """The declared recovery method called ``name``, or ``None``."""
        return next((method for method in self.recovery_methods if method.name == name), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Field:
    """One input a prompt asks for.

    :param name: the form / JSON field name the module reads from the answer.
    :param label: the text beside it.
    :param kind: ``text``, ``number``, ``password`` or ``hidden``.
    :param max_length: a hint for the input; the module still checks its input.
    :param required: False lets the person leave it empty (an optional name). Added in
        contract 1.1; hosts before it treat every field as required.
    :param value: what a ``hidden`` field sends back unchanged (a step marker, a key
        handle); added in contract 1.1. Only hidden fields carry one: what a person types
        is never pre-filled. Hidden from ``repr``; the page does show it, so never put a
        secret here.
    """

    name: str
    label: str
    kind: Literal["text", "number", "password", "hidden"] = "text"
    placeholder: str = ""
    max_length: int | None = None
    autocomplete: str = "one-time-code"
    required: bool = True
    value: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if self.value and self.kind != "hidden":
            raise ValueError(f"Field {self.name!r}: only a hidden field carries a value, not a {self.kind} one")


@dataclass(frozen=True, slots=True, kw_only=True)
class Provisioning:
    """What an enrolment shows its owner once: secret, otpauth URI and QR code.

    Every field is hidden from ``repr``: only the page or terminal of the person
    enrolling may show them.
    """

    secret: str = field(repr=False)
    uri: str = field(default="", repr=False)
    qr_svg: str = field(default="", repr=False)
    qr_terminal: str = field(default="", repr=False)


# -- browser ceremonies (contract 1.1) -------------------------------------------------
# Kept in their own block: other additions to this file stay clear of it when merging.

CeremonyKind = Literal["webauthn.create", "webauthn.get"]
"""The browser ceremonies a host knows how to run."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BrowserCeremony:
    """Something only the person's browser can do, such as touching a security key.

    Added in contract 1.1. A prompt carrying one asks the host's page to run the
    ceremony with ``options_json`` and to post the browser's JSON result back as the
    answer field ``answer_field``. A host that has no browser (the CLI) refuses such a
    prompt with a clear "needs a browser" error; the JSON API hands ``kind`` and
    ``options_json`` to its client, which runs the ceremony and sends the result back
    in ``answer_field``.

    :param kind: ``webauthn.create`` (register a credential: the options are
        WebAuthn's ``PublicKeyCredentialCreationOptionsJSON``) or ``webauthn.get``
        (prove one: ``PublicKeyCredentialRequestOptionsJSON``). Binary members are
        base64url text, and the result is the credential's JSON form with the same
        encoding (``PublicKeyCredential.toJSON()``).
    :param options_json: the options as JSON text; they hold a one-use challenge and the
        person's credential ids, so they are hidden from ``repr``.
    :param answer_field: the name of one of the prompt's fields (``kind="hidden"``) that
        carries the result; the prompt must list it.
    """

    kind: CeremonyKind
    options_json: str = field(repr=False)
    answer_field: str

    def __post_init__(self) -> None:
        if self.kind not in ("webauthn.create", "webauthn.get"):
            raise ValueError(
                f"BrowserCeremony.kind must be webauthn.create or webauthn.get, got {self.kind!r}"
            )
        if not isinstance(self.options_json, str) or not self.options_json.strip():
            raise ValueError("BrowserCeremony.options_json must be the options as JSON text")
        if not isinstance(self.answer_field, str) or not self.answer_field.strip():
            raise ValueError(
                "BrowserCeremony.answer_field must name the field the result is posted in"
            )


# -- prompts ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Prompt:
    """What to show the person: a message, the fields to fill, or where to go.

    :param message: the main line ("Enter authentication code").
    :param instructions: a longer explanation, plain text.
    :param fields: inputs to collect; the answer maps their names to strings.
    :param redirect_url: send the browser here instead of showing a form (Duo).
    :param provisioning: secret, URI and QR code during TOTP-like enrolment.
    :param ceremony: a :class:`BrowserCeremony` the page must run (a security key);
        its ``answer_field`` is one of ``fields``. Added in contract 1.1: a host that
        predates it shows only the fields, so a module needing it should declare
        ``contract=">=1.1,<2"``.
    """

    message: str
    instructions: str = ""
    fields: tuple[Field, ...] = ()
    redirect_url: str | None = field(default=None, repr=False)
    provisioning: Provisioning | None = None
    ceremony: BrowserCeremony | None = None

    def __post_init__(self) -> None:
        names = {f.name for f in self.fields}
        if self.ceremony is not None and self.ceremony.answer_field not in names:
            raise ValueError(
                f"Prompt.ceremony posts its result in {self.ceremony.answer_field!r}, which is not "
                "one of the prompt's fields; add it as a hidden Field"
            )


# -- contract 1.1: recovery methods declare what they ask -------------------------

BACKUP_CODE_METHOD = "backup_code"
"""The host's own recovery method; no module may declare it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryMethod:
    """A way back in, or back into sync, that a module's ``recover`` serves.

    Added in contract 1.1. The host renders ``prompt`` wherever a person may recover
    (``secmod recover --method NAME``, a page of the web host), and hands the answer,
    keyed by the prompt's field names, to ``recover`` with ``method == name``.

    :param name: the ``RecoverRequest.method`` value; a simple lower-case name. A module
        may not declare ``backup_code``: that one is the host's own.
    :param label: the link or button that offers it ("Resynchronise your authenticator").
    :param prompt: what to ask: a message, instructions and at least one field; never a
        redirect.
    """

    name: str
    label: str
    prompt: Prompt

    def __post_init__(self) -> None:
        name = self.name.strip().lower() if isinstance(self.name, str) else ""
        if not name or not name.replace("_", "").isalnum():
            raise ValueError(f"RecoveryMethod.name must be a simple lowercase name, got {self.name!r}")
        if not isinstance(self.label, str) or not self.label.strip():
            raise ValueError(f"recovery method {name!r}: label must be a non-empty string")
        if not isinstance(self.prompt, Prompt):
            raise TypeError(f"recovery method {name!r}: prompt must be a Prompt")
        if not self.prompt.fields or self.prompt.redirect_url:
            raise ValueError(f"recovery method {name!r}: the prompt must ask for fields and not redirect")
        names = [f.name for f in self.prompt.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"recovery method {name!r}: field names repeat: {names}")
        object.__setattr__(self, "name", name)

    @classmethod
    def from_name(cls, name: str) -> RecoveryMethod:
        """A contract 1.0 method, declared by name only: ask what 1.0 hosts asked.

        Hosts of contract 1.0 sent ``code`` and ``next_code``, so that is what such a
        method gets, under a label made from its name.
        """
        return cls(
            name=name,
            label=name.replace("_", " ").strip().capitalize() if isinstance(name, str) else "",
            prompt=Prompt(
                message="Enter two consecutive codes from your device.",
                fields=(Field(name="code", label="Code"), Field(name="next_code", label="Next code")),
            ),
        )


def _recovery_methods(module: str, declared: object) -> tuple[RecoveryMethod, ...]:
    if isinstance(declared, str | RecoveryMethod) or not isinstance(declared, tuple | list):
        raise TypeError(f"module {module!r}: recovery_methods must be a tuple of RecoveryMethod")
    methods = tuple(RecoveryMethod.from_name(m) if isinstance(m, str) else m for m in declared)
    if not all(isinstance(m, RecoveryMethod) for m in methods):
        raise TypeError(f"module {module!r}: recovery_methods must be a tuple of RecoveryMethod")
    names = [m.name for m in methods]
    if BACKUP_CODE_METHOD in names:
        raise ValueError(f"module {module!r}: recovery method {BACKUP_CODE_METHOD!r} is the host's own")
    if len(set(names)) != len(names):
        raise ValueError(f"module {module!r}: recovery methods repeat a name: {names}")
    return methods


# -- requests and results ---------------------------------------------------------

SettingsT = TypeVar("SettingsT", bound="ModuleSettings")
"""The module's own settings model: ``SetupRequest[TotpSettings]`` types ``request.settings``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivateRequest(Generic[SettingsT]):
    """Input of ``activate``: the module's validated settings and the time."""

    settings: SettingsT = field(repr=False)
    now: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Activation:
    """Output of ``activate``: what was checked, for the operator (no secrets)."""

    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SetupRequest(Generic[SettingsT]):
    """Input of ``setup_user``, one step of an enrolment conversation.

    :param answer: ``None`` on the first step; then the fields the person submitted.
    :param pending: what the module returned with its last :class:`SetupPrompt`
        (sealed by the host in between), or ``None`` on the first step.
    :param state: the person's current module state when re-enrolling, else ``None``.
    :param issuer: the host's ``issuer`` setting (contract 1.1): the name authenticator
        apps and messages show for this site, unless the module's settings override it.
    """

    settings: SettingsT = field(repr=False)
    user: User
    now: float
    issuer: str = ""
    answer: Mapping[str, str] | None = field(default=None, repr=False)
    pending: Mapping[str, Any] | None = field(default=None, repr=False)
    state: Mapping[str, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _freeze(self, "answer", "pending", "state")


@dataclass(frozen=True, slots=True, kw_only=True)
class SetupPrompt:
    """Enrolment is not finished: show ``prompt``, keep ``pending`` for the next step."""

    prompt: Prompt
    pending: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        _freeze(self, "pending")


@dataclass(frozen=True, slots=True, kw_only=True)
class SetupComplete:
    """Enrolment succeeded: ``state`` is stored (sealed) for the person.

    :param message: an extra line for the completion page (WHMCS ``msg``).
    """

    state: Mapping[str, Any] = field(default_factory=dict, repr=False)
    message: str = ""

    def __post_init__(self) -> None:
        _freeze(self, "state")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChallengeRequest(Generic[SettingsT]):
    """Input of ``challenge``: start the second step of a login.

    :param issuer: the host's ``issuer`` setting (contract 1.1): the name authenticator
        apps and messages show for this site, unless the module's settings override it.
    :param callback_url: where a redirecting module (``ModuleInfo.redirects``) sends the
        browser back to: ``{[web] base_url}/login/{module}/callback``, built by the host;
        the web host hands that request's whole query to ``verify`` as the answer.
        Empty when the host has no web address (the CLI). Added in contract 1.1.
    """

    settings: SettingsT = field(repr=False)
    user: User
    now: float
    issuer: str = ""
    state: Mapping[str, Any] = field(default_factory=dict, repr=False)
    callback_url: str = ""

    def __post_init__(self) -> None:
        _freeze(self, "state")


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge:
    """Output of ``challenge``.

    :param pending: server-side data for ``verify`` (Duo's state and nonce); the host
        seals it, binds it to this user and login attempt, and hands it back once.
    :param expires_in: seconds until the pending data is no longer accepted.
    """

    prompt: Prompt
    pending: Mapping[str, Any] | None = field(default=None, repr=False)
    expires_in: int = 300

    def __post_init__(self) -> None:
        _freeze(self, "pending")


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyRequest(Generic[SettingsT]):
    """Input of ``verify``: judge the person's answer.

    :param state: the person's module state as last written.
    :param pending: what ``challenge`` asked the host to keep, or ``None``.
    :param answer: the submitted fields (form fields or the redirect's query).
    :param issuer: the host's ``issuer`` setting (contract 1.1): the name authenticator
        apps and messages show for this site, unless the module's settings override it.
    """

    settings: SettingsT = field(repr=False)
    user: User
    now: float
    issuer: str = ""
    answer: Mapping[str, str] = field(default_factory=dict, repr=False)
    state: Mapping[str, Any] = field(default_factory=dict, repr=False)
    pending: Mapping[str, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _freeze(self, "answer", "state", "pending")


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoverRequest(Generic[SettingsT]):
    """Input of ``recover``: a way back in, or back in sync, without the usual answer.

    :param method: one of the module's ``ModuleInfo.recovery_methods``.
    :param issuer: the host's ``issuer`` setting (contract 1.1): the name authenticator
        apps and messages show for this site, unless the module's settings override it.
    """

    settings: SettingsT = field(repr=False)
    user: User
    now: float
    issuer: str = ""
    method: str
    answer: Mapping[str, str] = field(default_factory=dict, repr=False)
    state: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        _freeze(self, "answer", "state")


@dataclass(frozen=True, slots=True, kw_only=True)
class ForgetRequest(Generic[SettingsT]):
    """Input of ``forget_user``: the person's 2FA with this module is being removed."""

    settings: SettingsT = field(repr=False)
    user: User
    now: float
    state: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        _freeze(self, "state")


@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeRequest(Generic[SettingsT]):
    """Input of ``describe_user``: what the module may tell an operator about an enrolment.

    .. versionadded:: 1.1
    """

    settings: SettingsT = field(repr=False)
    user: User
    now: float
    state: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        _freeze(self, "state")


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted:
    """The answer is right.

    :param state: the new module state to write back, or ``None`` to keep it. The host
        writes it with a compare-and-set: when another submission won the race, this
        verdict is turned into a rejection, so a code is never accepted twice.
    :param reason: a short code for the audit log (``ok``, ``fail_open``...).
    :param message: an extra line for the person.
    """

    accepted: ClassVar[bool] = True
    state: Mapping[str, Any] | None = field(default=None, repr=False)
    reason: str = "ok"
    message: str = ""

    def __post_init__(self) -> None:
        _freeze(self, "state")


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejected:
    """The answer is wrong, or could not be checked.

    :param reason: a short code for the audit log (``wrong_code``, ``replayed``,
        ``deny``, ``unavailable``...). Never a code or a secret.
    :param message: the user-facing text; the host supplies WHMCS's wording if empty.
    :param detail: a plain-words diagnosis for the person (e.g. the clock-skew
        estimate); no secrets.
    :param counts: False when the person is not to blame (the provider is down), so
        the attempt does not count towards the lockout.
    """

    accepted: ClassVar[bool] = False
    reason: str
    message: str = ""
    detail: str = ""
    counts: bool = True


Verdict = Accepted | Rejected
