"""Contract 1.1: a prompt may carry a browser ceremony, and the host keeps it between steps."""

from __future__ import annotations

import pytest

from secmod.hookspecs import BrowserCeremony, Field, Prompt
from secmod.host.outcomes import prompt_from_json, prompt_to_json

OPTIONS = '{"challenge": "c2VjcmV0LWNoYWxsZW5nZQ", "rpId": "localhost"}'
ANSWER = Field(name="credential", label="Security key response", kind="hidden")


def test_a_prompt_with_a_ceremony_survives_the_hosts_sealing_round_trip() -> None:
    prompt = Prompt(
        message="Touch your key",
        fields=(ANSWER,),
        ceremony=BrowserCeremony(
            kind="webauthn.get", options_json=OPTIONS, answer_field="credential"
        ),
    )
    assert prompt_from_json(prompt_to_json(prompt)) == prompt
    plain = Prompt(message="Enter a code", fields=(Field(name="code", label="Code"),))
    assert prompt_from_json(prompt_to_json(plain)).ceremony is None


def test_the_options_are_kept_out_of_reprs() -> None:
    ceremony = BrowserCeremony(
        kind="webauthn.create", options_json=OPTIONS, answer_field="credential"
    )
    text = repr(Prompt(message="Register", fields=(ANSWER,), ceremony=ceremony))
    assert "c2VjcmV0LWNoYWxsZW5nZQ" not in text and "webauthn.create" in text


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"kind": "webauthn.sign", "options_json": OPTIONS, "answer_field": "credential"}, "kind"),
        (
            {"kind": "webauthn.get", "options_json": " ", "answer_field": "credential"},
            "options_json",
        ),
        ({"kind": "webauthn.get", "options_json": OPTIONS, "answer_field": ""}, "answer_field"),
    ],
)
def test_a_malformed_ceremony_is_refused_with_what_is_wrong(kwargs: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        BrowserCeremony(**kwargs)


def test_the_answer_field_must_be_one_of_the_prompts_fields() -> None:
    ceremony = BrowserCeremony(kind="webauthn.get", options_json=OPTIONS, answer_field="credential")
    with pytest.raises(ValueError, match="not one of the prompt's fields"):
        Prompt(
            message="Touch your key", fields=(Field(name="code", label="Code"),), ceremony=ceremony
        )
