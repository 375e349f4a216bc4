"""secmod next to bare pyotp and django-otp, measured interleaved in one process run.

    python bench/compare.py [--rounds 8] [--batch 150] [--million 1000000]

Per database (a SQLite file; PostgreSQL too when ``SECMOD_TEST_DATABASE_URL`` is set):

* bare ``pyotp.TOTP.verify`` (the floor: no storage at all);
* ``Host.verify`` accepted (the right code) and rejected (a wrong one), each call for
  another person so that no lockout and no used step gets in the way;
* django-otp: ``TOTPDevice`` load + ``verify_token`` (which saves the device), accepted
  and rejected, with Django's default SQLite settings and with WAL (and on PostgreSQL);
* ``Host.verify`` accepted with 1k and with 1M people enrolled (``--million``).

The systems take turns batch by batch (``--rounds`` rounds of ``--batch`` calls each),
so a busy machine slows them all alike; the figures are medians of single calls, and
the targets are ratios taken from the same run.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyotp

sys.path.insert(0, str(Path(__file__).parent))

from fill import fill_totp_users, secret_for, user_id  # noqa: E402

from secmod.hookspecs import Audience, User  # noqa: E402
from secmod.host import Host  # noqa: E402
from secmod.settings import SecmodSettings  # noqa: E402
from secmod.testing import postgres_schema_url  # noqa: E402

Figure = tuple[str, str, bool]  # what, its target, met


# -- the contestants ------------------------------------------------------------------


class Contestant:
    """Something to time: ``prepare(n)`` makes n calls' work, ``call(item)`` runs one."""

    name = ""

    def prepare(self, count: int) -> list[Any]:
        raise NotImplementedError

    def call(self, item: Any) -> None:
        raise NotImplementedError


class BarePyotp(Contestant):
    name = "pyotp.TOTP.verify"

    def __init__(self) -> None:
        self.totp = pyotp.TOTP(pyotp.random_base32())

    def prepare(self, count: int) -> list[Any]:
        now = time.time()
        return [(self.totp.at(now), now)] * count

    def call(self, item: Any) -> None:
        self.totp.verify(item[0], for_time=item[1], valid_window=1)


class SecmodVerify(Contestant):
    """``Host.verify`` for people enrolled in bulk, each once (right or wrong code)."""

    def __init__(
        self, host: Host, name: str, *, right: bool, first: int, last: int, stride: int = 1
    ) -> None:
        self.host, self.name, self.right = host, name, right
        self.next, self.last, self.stride = first, last, stride

    def prepare(self, count: int) -> list[Any]:
        at = time.time() + 30  # the next step's code: inside the window, never already used
        items = []
        for _ in range(count):
            if self.next >= self.last:
                raise SystemExit(f"{self.name}: ran out of enrolled people")
            uid = user_id(self.next)
            self.next += self.stride
            code = pyotp.TOTP(secret_for(uid)).at(at) if self.right else "000000"
            items.append((User(id=uid, audience=Audience.CLIENT), {"code": code}))
        return items

    def call(self, item: Any) -> None:
        result = self.host.verify(*item)
        if result.accepted is not self.right:
            raise SystemExit(f"{self.name}: unexpected {result.outcome.value} ({result.reason})")


class DjangoOtpVerify(Contestant):
    """django-otp's TOTPDevice: load it, ``verify_token`` (saves on success and on failure)."""

    def __init__(self, alias: str, name: str, *, right: bool, first: int, last: int) -> None:
        self.alias, self.name, self.right = alias, name, right
        self.next, self.last = first, last

    def prepare(self, count: int) -> list[Any]:
        at = time.time()
        items = []
        for _ in range(count):
            if self.next >= self.last:
                raise SystemExit(f"{self.name}: ran out of devices")
            index = self.next
            self.next += 1
            key = django_key(index)
            token = (
                pyotp.TOTP(base64.b32encode(bytes.fromhex(key)).decode()).at(at)
                if self.right
                else "000000"
            )
            items.append((index, token))
        return items

    def call(self, item: Any) -> None:
        from django_otp.plugins.otp_totp.models import TOTPDevice

        device = TOTPDevice.objects.using(self.alias).get(user_id=item[0] + 1)
        if device.verify_token(item[1]) is not self.right:
            raise SystemExit(f"{self.name}: unexpected result")


def django_key(index: int) -> str:
    return secret_for(f"django-{index}").encode().hex()[:40]


# -- Django, set up by hand -----------------------------------------------------------


def setup_django(databases: dict[str, dict[str, Any]]) -> None:
    import django
    from django.conf import settings

    settings.configure(
        DATABASES=databases,
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django_otp",
            "django_otp.plugins.otp_totp",
        ],
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    )
    django.setup()


def fill_django(alias: str, count: int) -> None:
    from django.contrib.auth.models import User as DjangoUser
    from django.core.management import call_command
    from django_otp.plugins.otp_totp.models import TOTPDevice

    call_command("migrate", database=alias, verbosity=0)
    DjangoUser.objects.using(alias).bulk_create(
        [DjangoUser(id=i + 1, username=f"user{i}") for i in range(count)], batch_size=2000
    )
    TOTPDevice.objects.using(alias).bulk_create(
        [
            TOTPDevice(user_id=i + 1, name="phone", key=django_key(i), confirmed=True)
            for i in range(count)
        ],
        batch_size=2000,
    )


# -- timing ---------------------------------------------------------------------------


def interleaved(contestants: list[Contestant], rounds: int, batch: int) -> dict[str, float]:
    """Median µs per call of each contestant, taking turns batch by batch."""
    samples: dict[str, list[float]] = {c.name: [] for c in contestants}
    for contestant in contestants:  # warm: imports, statement caches, the pool
        for item in contestant.prepare(min(batch, 20)):
            contestant.call(item)
    for _ in range(rounds):
        for contestant in contestants:
            work = contestant.prepare(batch)
            timings = samples[contestant.name]
            for item in work:
                started = time.perf_counter_ns()
                contestant.call(item)
                timings.append((time.perf_counter_ns() - started) / 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def show(medians: dict[str, float]) -> None:
    for name, micros in medians.items():
        print(f"    {name:<44} p50 {micros:>9.1f} µs")


def figure(what: str, value: float, target: str, met: bool) -> Figure:
    print(f"    {what:<58} {value:>6.2f}   target {target:<10} {'met' if met else 'NOT met'}")
    return (what, f"{value:.2f}, target {target}", met)


# -- the comparisons ------------------------------------------------------------------


def secmod_host(database_url: str, workdir: Path) -> Host:
    settings = SecmodSettings(
        database_url=database_url, sealing={"key_file": str(workdir / "bench.keys")}
    )
    return Host(settings)


# django-otp set-ups: alias -> (name, accepted target, rejected target); None = shown only.
Rivals = dict[str, tuple[str, float | None, float | None]]


def compare(
    label: str, database_url: str, workdir: Path, django_aliases: Rivals, rounds: int, batch: int
) -> list[Figure]:
    people = rounds * batch + 100
    print(f"  {label}:")
    with secmod_host(database_url, workdir) as host:
        fill_totp_users(host, 2 * people)
        contestants: list[Contestant] = [
            BarePyotp(),
            SecmodVerify(host, "secmod Host.verify, accepted", right=True, first=0, last=people),
            SecmodVerify(
                host, "secmod Host.verify, rejected", right=False, first=people, last=2 * people
            ),
        ]
        for alias, (name, _, _) in django_aliases.items():
            fill_django(alias, 2 * people)
            contestants += [
                DjangoOtpVerify(
                    alias, f"django-otp {name}, accepted", right=True, first=0, last=people
                ),
                DjangoOtpVerify(
                    alias,
                    f"django-otp {name}, rejected",
                    right=False,
                    first=people,
                    last=2 * people,
                ),
            ]
        medians = interleaved(contestants, rounds, batch)
    show(medians)
    accepted = medians["secmod Host.verify, accepted"]
    rejected = medians["secmod Host.verify, rejected"]
    print("    ratios ('x faster' = django-otp's time / secmod's time):")
    figures = [
        figure(
            f"{label}: accepted, x bare pyotp's cost",
            accepted / medians["pyotp.TOTP.verify"],
            "(info)",
            True,
        )
    ]
    for name, accepted_target, rejected_target in django_aliases.values():
        for kind, mine, wanted in (
            ("accepted", accepted, accepted_target),
            ("rejected", rejected, rejected_target),
        ):
            speedup = medians[f"django-otp {name}, {kind}"] / mine
            what = f"{label}: {kind}, x faster than django-otp {name}"
            if wanted is None:
                figure(what, speedup, "(info)", True)
            else:
                figures.append(figure(what, speedup, f">= {wanted}", speedup >= wanted))
    return figures


def growth(
    label: str,
    database_url_small: str,
    database_url_large: str,
    workdir: Path,
    million: int,
    rounds: int,
    batch: int,
) -> list[Figure]:
    """Accepted Host.verify with 1k people enrolled against ``million`` (interleaved)."""
    people = rounds * batch + 100
    print(f"  {label}: accepted verify with 1,000 vs {million:,} people enrolled")
    with (
        secmod_host(database_url_small, workdir) as small,
        secmod_host(database_url_large, workdir) as large,
    ):
        fill_totp_users(small, max(1000, people))
        took = fill_totp_users(large, million)
        print(f"    filled {million:,} people in {took:.0f} s ({million / took:,.0f}/s)")
        # Spread the people verified over the whole large table, not its first pages.
        stride = max(1, million // people)
        medians = interleaved(
            [
                SecmodVerify(small, "1k people", right=True, first=0, last=max(1000, people)),
                SecmodVerify(
                    large,
                    f"{million // 1000}k people",
                    right=True,
                    first=0,
                    last=million,
                    stride=stride,
                ),
            ],
            rounds,
            batch,
        )
    show(medians)
    ratio = medians[f"{million // 1000}k people"] / medians["1k people"]
    return [
        figure(f"{label}: cost with {million:,} / with 1,000 people", ratio, "<= 1.2", ratio <= 1.2)
    ]


def sqlite_django(path: Path, *, wal: bool) -> dict[str, Any]:
    options: dict[str, Any] = {"timeout": 30}
    if wal:  # the same journal settings secmod uses
        options["init_command"] = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path), "OPTIONS": options}


def postgres_django(url: str) -> dict[str, Any]:
    import sqlalchemy as sa

    parsed = sa.engine.make_url(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parsed.database,
        "USER": parsed.username or "",
        "PASSWORD": parsed.password or "",
        "HOST": parsed.host or "",
        "PORT": str(parsed.port or ""),
        "OPTIONS": {"options": parsed.query.get("options", "")},
    }


def main(argv: list[str] | None = None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--batch", type=int, default=150)
    parser.add_argument(
        "--million", type=int, default=1_000_000, help="people in the large database"
    )
    args = parser.parse_args(argv)
    print(
        f"secmod vs pyotp and django-otp, interleaved ({os.cpu_count()} CPUs, {args.rounds} rounds of "
        f"{args.batch} calls each)"
    )
    base = os.environ.get("SECMOD_TEST_DATABASE_URL")
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        databases = {
            "default": sqlite_django(workdir / "django-default.db", wal=False),
            "wal": sqlite_django(workdir / "django-wal.db", wal=True),
        }
        if base:
            databases["pg"] = postgres_django(stack.enter_context(postgres_schema_url(base)))
        setup_django(databases)
        figures += compare(
            "SQLite file",
            f"sqlite:///{workdir / 'secmod.db'}",
            workdir,
            {"default": ("default", 3.0, None), "wal": ("WAL", 1.5, 1.0)},
            args.rounds,
            args.batch,
        )
        if base:
            figures += compare(
                "PostgreSQL",
                stack.enter_context(postgres_schema_url(base)),
                workdir,
                {"pg": ("on PostgreSQL", 1.5, 1.0)},
                args.rounds,
                args.batch,
            )
        else:
            print("  PostgreSQL: skipped (set SECMOD_TEST_DATABASE_URL to include it)")
        figures += growth(
            "SQLite file",
            f"sqlite:///{workdir / 'small.db'}",
            f"sqlite:///{workdir / 'large.db'}",
            workdir,
            args.million,
            args.rounds,
            args.batch,
        )
        if base:
            figures += growth(
                "PostgreSQL",
                stack.enter_context(postgres_schema_url(base)),
                stack.enter_context(postgres_schema_url(base)),
                workdir,
                args.million,
                args.rounds,
                args.batch,
            )
    return figures


if __name__ == "__main__":
    main()
