"""QR codes for enrolment: drawn by the host from the otpauth URI a module provisions.

Modules give :attr:`Provisioning.uri`; the host draws it once for each place it is shown
(SVG for a page, block characters for a terminal), so no module needs a QR library.
"""

from __future__ import annotations

import dataclasses
import io

import segno

from secmod.hookspecs import Prompt

__all__ = ["with_qr_codes"]


def with_qr_codes(prompt: Prompt) -> Prompt:
    """``prompt`` with its provisioning QR codes drawn from the URI where the module gave none.

    A module that draws its own (``qr_svg``/``qr_terminal`` set) keeps them.
    """
    provisioning = prompt.provisioning
    if provisioning is None or not provisioning.uri or (provisioning.qr_svg and provisioning.qr_terminal):
        return prompt
    # Error correction "m" survives a glare on a phone screen and keeps the code small.
    code = segno.make(provisioning.uri, error="m")
    svg, text = io.BytesIO(), io.StringIO()
    code.save(svg, kind="svg", scale=4, xmldecl=False, svgns=True, dark="#111", light="#fff")
    code.terminal(out=text, compact=True)
    drawn = dataclasses.replace(
        provisioning,
        qr_svg=provisioning.qr_svg or svg.getvalue().decode(),
        qr_terminal=provisioning.qr_terminal or text.getvalue(),
    )
    return dataclasses.replace(prompt, provisioning=drawn)
