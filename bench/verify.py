"""How much a host verify costs next to a bare pyotp verify, on SQLite and PostgreSQL.

    make bench            # SQLite file; PostgreSQL too when SECMOD_TEST_DATABASE_URL is set

A host verify is the whole accepted path: load and reserve an attempt, unseal the state,
dispatch to the TOTP module, compare-and-set the new state, reset the throttle, write the
audit row. The rejected path (what a brute-forcer drives) is measured too, with a limit
high enough that it never locks. The target is at most 25 bare pyotp verifies per host
verify on SQLite, and at most 2 round trips per accepted verify on PostgreSQL, counted
from libpq's own protocol trace (one round trip ends with each Sync or simple Query).
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


def bench_host(name: str, database_url: str, workdir: Path, *, rejected: bool = False) -> float:
    clock = FakeClock()
    settings = SecmodSettings(database_url=database_url, sealing={"key_file": str(workdir / f"{name}{rejected}.keys")},
                              throttle={"max_code_failures": 1000})
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
            if rejected:
                code = f"{(int(code) + 1) % 10**6:06d}"
                if i % 900 == 0:
                    host.verify(user, {"code": totp.at(clock.now)})  # a right code resets the count
            start = time.perf_counter_ns()
            result = host.verify(user, {"code": code})
            elapsed = time.perf_counter_ns() - start
            if result.accepted is rejected:
                sys.exit(f"benchmark verify came out {result.outcome.value}: {result.reason}")
            if i >= 100:  # the first ones warm caches and the connection pool
                samples.append(elapsed)
        return report(f"Host.verify {'rejected' if rejected else 'accepted'}, {name}", samples)


def round_trips_per_verify(url: str, workdir: Path) -> tuple[int, int]:
    """Round trips of one accepted and one rejected TOTP verify on PostgreSQL."""
    import sqlalchemy as sa
    from psycopg import pq
    from secmod.host.storage import open_engine

    trace_path = workdir / "libpq.trace"
    with trace_path.open("w") as trace:
        engine = open_engine(url)

        @sa.event.listens_for(engine, "connect")
        def _trace(dbapi_connection, _record):
            dbapi_connection.pgconn.trace(trace.fileno())
            dbapi_connection.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)

        engine.dispose()  # the migration check's connection was opened untraced
        clock = FakeClock()
        settings = SecmodSettings(database_url=url, sealing={"key_file": str(workdir / "trips.keys")})
        with Host(settings, clock=clock, engine=engine) as host:
            user = User(id="trips", audience=Audience.CLIENT)
            started = host.begin_setup(user, "totp")
            totp = pyotp.TOTP(started.prompt.provisioning.secret)
            host.continue_setup(user, started.setup_id, {"code": totp.at(clock.now)})
            counts = []
            for answer in (lambda: totp.at(clock.now), lambda: "000000"):
                clock.advance(30)
                host.verify(user, {"code": totp.at(clock.now)})  # connections warm
                clock.advance(30)
                trace.flush()
                before = trace_path.stat().st_size
                host.verify(user, {"code": answer()})
                trace.flush()
                lines = trace_path.read_text()[before:].splitlines()
                counts.append(sum(1 for line in lines if line.startswith("F") and line.split("\t")[2] in ("Sync", "Query")))
    return counts[0], counts[1]


def main() -> None:
    print(f"secmod verify benchmark — Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    raw = bench_raw()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        sqlite = bench_host("SQLite file", f"sqlite:///{workdir / 'bench.db'}", workdir)
        bench_host("SQLite file", f"sqlite:///{workdir / 'rejected.db'}", workdir, rejected=True)
        ratio = sqlite / raw
        verdict = "met" if ratio <= TARGET_RATIO else "NOT MET"
        print(f"SQLite host verify = {ratio:.1f} bare pyotp verifies (p50); target ≤ {TARGET_RATIO}: {verdict}")
        base = os.environ.get("SECMOD_TEST_DATABASE_URL")
        if base:
            with postgres_schema_url(base) as url:
                postgres = bench_host("PostgreSQL", url, workdir)
            with postgres_schema_url(base) as url:
                bench_host("PostgreSQL", url, workdir, rejected=True)
            print(f"PostgreSQL host verify = {postgres / raw:.1f} bare pyotp verifies (p50)")
            with postgres_schema_url(base) as url:
                accepted_trips, rejected_trips = round_trips_per_verify(url, workdir)
            verdict = "met" if accepted_trips <= 2 else "NOT MET"
            print(f"PostgreSQL round trips per verify: accepted {accepted_trips}, rejected {rejected_trips}; "
                  f"target accepted ≤ 2: {verdict}")
        else:
            print("PostgreSQL: skipped (set SECMOD_TEST_DATABASE_URL to include it)")


if __name__ == "__main__":
    main()
