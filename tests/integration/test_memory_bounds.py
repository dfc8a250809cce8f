"""The service's memory follows from its byte bounds (issue 17, item 7), as a process.

6,000 profiles with a 60 KB value each (360 MB of events) go through ``profile-sync run``
against the real broker and the emulator. Carry-forward used to keep every one of them
(bounded by a count of profiles: ~1.4 GB resident); now it keeps what
PROFILE_SYNC_CARRY_FORWARD_MAX_BYTES allows. The peak resident memory of the process
(VmHWM) must stay under the worst case deploy/checks/pod.py computes from the same
settings, the figure pods are sized with. Not a timing test: it waits on conditions.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

from consumer import config
from deploy.checks.pod import memory_estimate
from tests.integration.conftest import Stack
from tests.integration.events import event
from tests.integration.service import wait_for

PROFILES = 6_000
T0 = 1_700_000_000_000
SETTINGS = {
    "PROFILE_SYNC_CARRY_FORWARD_MAX_BYTES": "64000000",
    "PROFILE_SYNC_BUFFER_MAX_BYTES": "16000000",
    "PROFILE_SYNC_BATCH_MAX_BYTES": "8000000",
    "PROFILE_SYNC_STATUS_RETAIN_MAX_BYTES": "32000000",
    "PROFILE_SYNC_SINGLE_ENABLED": "false",
    "PROFILE_SYNC_TARGET_CALLS_PER_MINUTE": "6000",
    "PROFILE_SYNC_CONSUME_BATCH_SIZE": "500",
    "KAFKA_QUEUED_MAX_MESSAGES_KBYTES": "16384",
}


def _peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_six_thousand_profiles_of_60_kb_stay_within_the_sized_memory(
    stack: Callable[..., Stack],
) -> None:
    s = stack(partitions=3, topics=1, bulk_rate_limit=0)
    for start in range(0, PROFILES, 500):
        s.produce(
            [
                event(f"crm-{p:06d}", {"note": f"{p:06d}".ljust(60_000, "v")}, T0 + p)
                for p in range(start, start + 500)
            ]
        )
    env = s.env(**SETTINGS)
    limit = memory_estimate(config.load(env))
    service = s.start(**SETTINGS)

    def done() -> bool:
        stats = s.emulator.control.stats()
        return bool(
            s.all_committed()
            and stats["rows"]["successful"] >= PROFILES
            and stats["batches"]["incomplete"] == 0
        )

    wait_for(done, 300, "every profile applied", interval=1.0)
    wait_for(
        lambda: (
            service.metric("profile_sync_batch_status_total", status="complete")
            >= s.emulator.control.stats()["batches_accepted"]
        ),
        60,
        "every batch known complete",
    )
    peak = _peak_rss(service.proc.pid)
    evicted = service.metric("profile_sync_carry_forward_evictions_total")
    counted = service.metric("profile_sync_carry_forward_bytes")
    service.signal(signal.SIGTERM)
    assert service.wait(60) == 0, service.log_tail()
    print(f"peak RSS {peak / 1e6:.0f} MB, sized {limit / 1e6:.0f} MB, carry {counted / 1e6:.0f} MB")
    assert counted <= 64_000_000
    assert evicted > 0
    assert peak <= limit, f"peak RSS {peak / 1e6:.0f} MB over the {limit / 1e6:.0f} MB sized"
