"""What docs/embedding.md promises about threads and async use, checked."""

from __future__ import annotations

import asyncio

from support import ALICE, enrol_totp

from secmod.host import Outcome


def test_async_applications_call_the_host_in_worker_threads(make_host, fake_clock):
    # The documented pattern: one shared Host, each call in a worker thread
    # (asyncio.to_thread), so the event loop never waits on the database or a provider.
    host = make_host()
    totp, _ = enrol_totp(host, ALICE, fake_clock)
    code = totp.at(fake_clock())

    async def log_in_eight_times_at_once() -> list[Outcome]:
        async def one() -> Outcome:
            started = await asyncio.to_thread(host.begin_challenge, ALICE)
            result = await asyncio.to_thread(host.verify, ALICE, {"code": code}, challenge_id=started.challenge_id)
            return result.outcome

        return list(await asyncio.wait_for(asyncio.gather(*(one() for _ in range(8))), timeout=60))

    outcomes = asyncio.run(log_in_eight_times_at_once())
    assert outcomes.count(Outcome.ACCEPTED) == 1, outcomes
    assert set(outcomes) <= {Outcome.ACCEPTED, Outcome.REJECTED, Outcome.LOCKED}
