"""Where a request comes from, as the host application saw it, and where a redirect returns."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CALLBACK_PATH", "RequestContext", "callback_url"]

CALLBACK_PATH = "/login/{module}/callback"
"""Where the web host takes a redirecting module's answer: the whole query is the answer."""

_MAX_IP = 64
_MAX_USER_AGENT = 255


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestContext:
    """The client of one login request: recorded in the audit row, and ``client_ip``
    keys the throttle that counts failures per address across accounts.

    :param client_ip: the address the application trusts (behind a proxy, the one the
        proxy reports); empty when unknown, which skips the per-address throttle.
    :param user_agent: the browser's User-Agent header, cut to 255 characters.
    """

    client_ip: str = ""
    user_agent: str = ""

    def __post_init__(self) -> None:
        # Cut here, once, so a hostile header can never make an audit row fail to insert.
        object.__setattr__(self, "client_ip", _printable(self.client_ip)[:_MAX_IP])
        object.__setattr__(self, "user_agent", _printable(self.user_agent)[:_MAX_USER_AGENT])


def _printable(value: object) -> str:
    text = value if isinstance(value, str) else ""
    return "".join(ch for ch in text if ch.isprintable() and not 0xD800 <= ord(ch) <= 0xDFFF)


def callback_url(base_url: str, module: str) -> str:
    """The absolute address a redirecting module sends the browser back to."""
    return base_url.rstrip("/") + CALLBACK_PATH.format(module=module)
