"""Store.bulk_enrol: many people at once (imports, the bench's million), ready to log in."""

from __future__ import annotations

from typing import Any

import pyotp
import pytest
from secmod.hookspecs import Audience, User


def _check_bulk_enrol(host: Any, fake_clock: Any) -> None:
    people = [User(id=f"bulk-{i}", audience=Audience.CLIENT) for i in range(50)]
    secrets = {user.id: pyotp.random_base32() for user in people}
    rows = [
        (
            user,
            "totp",
            host.sealed.seal_state(
                user, "totp", {"secret": secrets[user.id], "last_step": 0, "drift": 0}
            ),
        )
        for user in people
    ]
    host.store.bulk_enrol(rows, fake_clock())
    assert host.enrolment_counts() == {"totp": 50}
    for user in (people[0], people[-1]):
        code = pyotp.TOTP(secrets[user.id]).at(fake_clock())
        assert host.verify(user, {"code": code}).accepted
        assert not host.verify(user, {"code": code}).accepted  # and once only


def test_bulk_enrol_on_sqlite(make_host: Any, fake_clock: Any) -> None:
    _check_bulk_enrol(make_host(), fake_clock)


@pytest.mark.postgres
def test_bulk_enrol_on_postgresql(make_host: Any, fake_clock: Any, postgres_url: str) -> None:
    _check_bulk_enrol(make_host(database_url=postgres_url), fake_clock)
