"""How much a host verify costs next to a bare pyotp verify, on SQLite and PostgreSQL.

    make bench            # SQLite file; PostgreSQL too when SECMOD_TEST_DATABASE_URL is set

A host verify is the whole accepted path: load and unseal the state, dispatch to the
TOTP module, compare-and-set the new state, write the audit row, commit. The target is
at most 25 bare pyotp verifies per host verify on SQLite.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyotp

from secmod.hookspecs import Audience, User
from secmod.host import Host
from secmod.settings import SecmodSettings
from secmod.testing import FakeClock, postgres_schema_url

RAW_ROUNDS = 20_000
HOST_ROUNDS = 2_000
TARGET_RATIO = 25


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def report(name: str, samples_ns: list[int]) -> float:
    micros = [s / 1000 for s in samples_ns]
    mean = statistics.fmean(micros)
    print(f"{name:<34} {1e6 / mean:>10,.0f}/s   p50 {percentile(micros, .5):>8.1f} µs   p99 {percentile(micros, .99):>8.1f} µs")
    return statistics.median(micros)


def bench_raw() -> float:
    totp = pyotp.TOTP(pyotp.random_base32())
    now = time.time()
    code = totp.at(now)
    samples = []
    for _ in range(RAW_ROUNDS):
        start = time.perf_counter_ns()
        totp.verify(code, for_time=now, valid_window=1)
        samples.append(time.perf_counter_ns() - start)
    return report("pyotp.TOTP.verify (window 1)", samples)


def bench_host(name: str, database_url: str, workdir: Path) -> float:
    clock = FakeClock()
    settings = SecmodSettings(database_url=database_url, sealing={"key_file": str(workdir / f"{name}.keys")})
    with Host(settings, clock=clock) as host:
        user = User(id="bench", audience=Audience.CLIENT, email="bench@example.com")
        started = host.begin_setup(user, "totp")
        totp = pyotp.TOTP(started.prompt.provisioning.secret)
        host.continue_setup(user, started.setup_id, {"code": totp.at(clock.now)})
        # Codes for the coming steps are made before timing: only the host is measured.
        codes = [totp.at(clock.now + 30 * (i + 1)) for i in range(HOST_ROUNDS + 100)]
        samples = []
        for i, code in enumerate(codes):
            clock.advance(30)
            start = time.perf_counter_ns()
            result = host.verify(user, {"code": code})
            elapsed = time.perf_counter_ns() - start
            if not result.accepted:
                sys.exit(f"benchmark verify was rejected: {result.reason}")
            if i >= 100:  # the first ones warm caches and the connection pool
                samples.append(elapsed)
        return report(f"Host.verify, TOTP, {name}", samples)


def main() -> None:
    print(f"secmod verify benchmark — Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    raw = bench_raw()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        sqlite = bench_host("SQLite file", f"sqlite:///{workdir / 'bench.db'}", workdir)
        ratio = sqlite / raw
        verdict = "within" if ratio <= TARGET_RATIO else "OVER"
        print(f"SQLite host verify = {ratio:.1f} bare pyotp verifies (p50); target ≤ {TARGET_RATIO}: {verdict}")
        base = os.environ.get("SECMOD_TEST_DATABASE_URL")
        if base:
            with postgres_schema_url(base) as url:
                postgres = bench_host("PostgreSQL", url, workdir)
            print(f"PostgreSQL host verify = {postgres / raw:.1f} bare pyotp verifies (p50)")
        else:
            print("PostgreSQL: skipped (set SECMOD_TEST_DATABASE_URL to include it)")


if __name__ == "__main__":
    main()
