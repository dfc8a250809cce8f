"""Shared test helpers: an oracle for the final Target state, the fake clock, update
builders, and fakes of the core's seams (consumer/core/seams.py) for the loop's unit tests.

Both tiers import this module. The oracle (``fold`` and ``fold_batches``) is written from
the documented rules, not from the consumer's code, so a test comparing the two proves
something: the rendering rule of schemas/README.md and guarantee 2 of docs/guarantees.md
(newest value per attribute wins).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import unquote

from consumer.core.model import (
    BatchFile,
    DeadLetter,
    IdType,
    Priority,
    ProfileUpdate,
    TopicPartition,
)
from consumer.core.seams import Record
from consumer.target.api import BulkAccepted
from consumer.target.bulk import BulkOutcome, BulkResult
from consumer.target.status import FinalStatus, StatusOutcome

# ProfileChange ``profile.id_type`` -> the name Target uses in a batch file header.
ID_TYPE_HEADER = {"THIRD_PARTY_ID": "thirdPartyId", "PC_ID": "pcId"}

DEFAULT_TP = TopicPartition("crm.profile-changes", 0)

ProfileKey = tuple[str, str]  # (id type header name, profile id)
ProfileState = dict[ProfileKey, dict[str, str]]


def render(value: object) -> str | None:
    """The Target string for one attribute value, or None for "no change".

    String as is (empty = no change), null = no change, boolean ``true``/``false``
    (checked before int: a bool is an int in Python), long as decimal, double in shortest
    round-trip form (Python's ``repr``).
    """
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    raise TypeError(f"not an attribute value: {value!r}")


def fold(events: Iterable[Mapping[str, Any]]) -> ProfileState:
    """The final Target profile state the service must produce from these events.

    ``fold(events: Iterable[dict]) -> dict[tuple[str, str], dict[str, str]]``

    ``events`` are ProfileChange records as dicts (``profile.id_type``, ``profile.id``,
    ``occurred_at``, ``attributes``), in production order. The result is keyed by
    (id type header name ``"thirdPartyId"``/``"pcId"``, profile id) and maps each attribute
    name (``profile.`` prefix stripped) to its Target string. Per profile and attribute the
    value of the event with the latest ``occurred_at`` wins; on a tie the later event in the
    list wins. Null and empty-string values change nothing (Target cannot delete), so a
    profile whose events carry only those is absent.

    Valid events only: leave out events the service dead-letters (invalid ids or names,
    NaN, over 64 KB). Cross-partition ordering is by ``occurred_at``, so this is exact when
    ``occurred_at`` never decreases within one profile's partition (the generator in
    tests/integration/events.py makes it grow with list position).
    """
    state: dict[ProfileKey, dict[str, tuple[int, str]]] = {}
    for event in events:
        profile = event["profile"]
        key = (ID_TYPE_HEADER[profile["id_type"]], profile["id"])
        occurred_at = event["occurred_at"]
        cells = state.setdefault(key, {})
        for raw_name, value in event["attributes"].items():
            rendered = render(value)
            if rendered is None:
                continue
            name = raw_name.removeprefix("profile.")
            old = cells.get(name)
            if old is None or occurred_at >= old[0]:
                cells[name] = (occurred_at, rendered)
    return {
        key: {name: value for name, (_, value) in cells.items()}
        for key, cells in state.items()
        if cells
    }


def fold_updates(updates: Iterable[ProfileUpdate]) -> ProfileState:
    """Guarantee 2 (docs/guarantees.md) over rendered ``ProfileUpdate``s, in consumption order.

    An attribute takes a newer event's value when the event comes from the same partition
    as the value it replaces (a later offset) or when its ``occurred_at`` is not older.
    """
    state: dict[ProfileKey, dict[str, tuple[int, TopicPartition, str]]] = {}
    for u in updates:
        cells = state.setdefault((u.id_type.value, u.profile_id), {})
        for name, value in u.attributes.items():
            old = cells.get(name)
            if old is None or old[1] == u.tp or u.occurred_at >= old[0]:
                cells[name] = (u.occurred_at, u.tp, value)
    return {
        key: {name: value for name, (_, _, value) in cells.items()}
        for key, cells in state.items()
        if cells
    }


def parse_batch(body: bytes) -> tuple[str, list[tuple[str, dict[str, str]]]]:
    """A batch file read the way Target reads it: (id type name, [(profile id, cells)]).

    Written independently of ``consumer.target.wire.decode_batch``: split lines and commas,
    URL-decode each cell, drop empty cells (an empty cell sets nothing).
    """
    text = body.decode("ascii")
    assert text.endswith("\n"), "a batch file ends with a line break"
    header, *lines = text[:-1].split("\n")
    first, *names = header.split(",")
    assert first.startswith("batch="), first
    decoded_names = [unquote(n, errors="strict") for n in names]
    rows = []
    for line in lines:
        cells = line.split(",")
        assert len(cells) == len(names) + 1, f"row has {len(cells)} cells, header {len(names) + 1}"
        attrs = {
            decoded_names[i]: unquote(c, errors="strict") for i, c in enumerate(cells[1:]) if c
        }
        rows.append((unquote(cells[0], errors="strict"), attrs))
    return first.removeprefix("batch="), rows


def fold_batches(bodies: Iterable[bytes]) -> ProfileState:
    """The profile state after Target applies these batch files in order (merge reading):
    each row sets its non-empty cells, later files overwrite earlier values."""
    state: ProfileState = {}
    for body in bodies:
        id_type, rows = parse_batch(body)
        for profile_id, attrs in rows:
            state.setdefault((id_type, profile_id), {}).update(attrs)
    return {key: attrs for key, attrs in state.items() if attrs}


class FakeClock:
    """A ``consumer.clock.Clock`` that moves only when told to (the one fake clock).

    Also a plain callable returning ``now`` with a recording ``sleep``, for code that takes
    ``clock=`` and ``sleep=`` functions (the emulator).
    """

    def __init__(self, monotonic: float = 1000.0, wall: float = 1_700_000_000.0) -> None:
        self.now = monotonic
        self._wall_offset = wall - monotonic
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now + self._wall_offset

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def make_update(
    profile_id: str,
    attributes: dict[str, str],
    *,
    occurred_at: int = 1_700_000_000_000,
    id_type: IdType = IdType.THIRD_PARTY_ID,
    tp: TopicPartition = DEFAULT_TP,
    offset: int = 0,
    priority: Priority = Priority.NORMAL,
) -> ProfileUpdate:
    """A rendered, valid ``ProfileUpdate`` with defaults for what a test does not care about."""
    return ProfileUpdate(
        id_type=id_type,
        profile_id=profile_id,
        attributes=dict(attributes),
        priority=priority,
        occurred_at=occurred_at,
        tp=tp,
        offset=offset,
    )


# -- fakes of the seams in consumer/core/seams.py


class FakeSource:
    """A consumer-group member over in-memory partitions (the ``Source`` seam).

    ``produce`` appends records; ``consume`` hands them out in order from assigned,
    unpaused partitions; ``store_offsets`` and ``commit_sync`` record what would reach the
    broker; ``revoke``/``lose`` run the loop's callbacks as librdkafka would.
    """

    def __init__(self) -> None:
        self.logs: dict[TopicPartition, list[Record]] = {}
        self.position: dict[TopicPartition, int] = {}
        self.assigned: set[TopicPartition] = set()
        self.paused: set[TopicPartition] = set()
        self.stopping = False
        self.stored: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}
        self.commits: list[dict[TopicPartition, int]] = []  # every commit_sync, in order
        self.store_calls: list[dict[TopicPartition, int]] = []
        self.complete: dict[TopicPartition, int] = {}  # complete-up-to offsets stored
        self.rewound: list[set[TopicPartition]] = []
        self._rewind: set[TopicPartition] = set()
        self.closed = False
        self.on_assign: Callable[[set[TopicPartition]], None] = lambda tps: None
        self.on_revoke: Callable[[set[TopicPartition]], None] = lambda tps: None
        self.on_lost: Callable[[set[TopicPartition]], None] = lambda tps: None

    def produce(self, tp: TopicPartition, values: Iterable[bytes | None]) -> None:
        log = self.logs.setdefault(tp, [])
        for value in values:
            log.append(Record(tp.topic, tp.partition, len(log), b"k", value, 0))

    def assign(self, tps: set[TopicPartition]) -> None:
        self.assigned |= tps
        for tp in tps:
            self.position[tp] = self.committed.get(tp, 0)
        self.on_assign(tps)

    def revoke(self, tps: set[TopicPartition]) -> None:
        try:
            self.on_revoke(tps)
        finally:
            self._release(tps)

    def lose(self, tps: set[TopicPartition]) -> None:
        try:
            self.on_lost(tps)
        finally:
            self._release(tps)

    def _release(self, tps: set[TopicPartition]) -> None:
        self.assigned -= tps
        self.paused -= tps
        self._rewind -= tps

    def consume(self, max_records: int, timeout: float) -> list[Record]:
        for tp in self._rewind & self.assigned:
            self.position[tp] = self.committed.get(tp, 0)
        self._rewind = set()
        out: list[Record] = []
        for tp in sorted(self.assigned - self.paused):
            log = self.logs.get(tp, [])
            start = self.position[tp]
            taken = log[start : start + max_records - len(out)]
            self.position[tp] = start + len(taken)
            out.extend(taken)
        return out

    def store_offsets(self, offsets: dict[TopicPartition, int]) -> None:
        mine = {tp: off for tp, off in offsets.items() if tp in self.assigned}
        self.store_calls.append(mine)
        self.stored.update(mine)

    def store_complete(self, complete: dict[TopicPartition, int]) -> None:
        self.complete.update({tp: off for tp, off in complete.items() if tp in self.assigned})

    def commit_sync(self) -> None:
        done = {tp: off for tp, off in self.stored.items() if self.committed.get(tp) != off}
        self.committed.update(done)
        self.commits.append(done)

    def auto_commit(self) -> None:
        """What librdkafka's auto-commit does now and then: commit what was stored."""
        self.committed.update(self.stored)

    def pause_all(self) -> None:
        self.paused |= self.assigned

    def begin_stop(self) -> None:
        self.stopping = True

    def pause(self, tps: set[TopicPartition]) -> None:
        self.paused |= tps

    def resume_all(self) -> None:
        self.paused = set()

    def request_rewind(self, tps: set[TopicPartition]) -> None:
        self.rewound.append(set(tps))
        self._rewind |= tps

    def close(self) -> None:
        self.closed = True
        if self.assigned:
            self.revoke(set(self.assigned))


class FakeUploads:
    """Target's Bulk API behind the ``Uploads`` seam, answering when the test says so.

    With ``auto_accept`` every submitted batch is accepted at once; otherwise batches stay
    in ``held`` until ``accept``/``reject``. ``peak`` is the most batches ever submitted
    and not yet answered. Waiting for a result moves the fake clock instead of sleeping.
    """

    def __init__(self, clock: FakeClock, auto_accept: bool = True) -> None:
        self.clock = clock
        self.auto_accept = auto_accept
        self.submitted: list[tuple[BatchFile, bool]] = []
        self.held: dict[int, tuple[BatchFile, bool]] = {}
        self.cancelled: list[int] = []
        self.peak = 0
        self.closed = False
        self._results: deque[BulkResult] = deque()

    def submit(self, batch: BatchFile, resubmission: bool = False) -> None:
        self.submitted.append((batch, resubmission))
        self.held[batch.batch_id] = (batch, resubmission)
        self.peak = max(self.peak, len(self.held))
        if self.auto_accept:
            self.accept(batch.batch_id)

    def _answer(self, batch_id: int, outcome: BulkOutcome, error: str = "") -> None:
        batch, resubmission = self.held.pop(batch_id)
        accepted = None
        if outcome is BulkOutcome.ACCEPTED:
            accepted = BulkAccepted(f"https://target.test/status/{batch_id}", "queued")
        self._results.append(
            BulkResult(batch, outcome, accepted, error, 1, resubmission, self.clock.time())
        )

    def accept(self, batch_id: int) -> None:
        self._answer(batch_id, BulkOutcome.ACCEPTED)

    def reject(self, batch_id: int) -> None:
        self._answer(batch_id, BulkOutcome.REJECTED, "400 invalid file")

    def cancel(self, batch_id: int) -> None:
        self.cancelled.append(batch_id)
        if batch_id in self.held:
            self._answer(batch_id, BulkOutcome.CANCELLED, "cancelled")

    def next_result(self, timeout: float = 0.0) -> BulkResult | None:
        if self._results:
            return self._results.popleft()
        self.clock.advance(timeout)
        return None

    def close(self) -> None:
        self.closed = True
        for batch_id in list(self.held):
            self.cancel(batch_id)


class FakeFollower:
    """Batch status behind the ``BatchFollower`` seam: the test decides final statuses."""

    def __init__(self) -> None:
        self.following: dict[int, tuple[BatchFile, int]] = {}
        self._outcomes: deque[StatusOutcome] = deque()
        self.closed = False

    @property
    def tracked(self) -> int:
        return len(self.following)

    def track(self, batch: BatchFile, url: str, resubmits: int = 0) -> None:
        self.following[batch.batch_id] = (batch, resubmits)

    def finish(self, batch_id: int, outcome: FinalStatus) -> None:
        batch, resubmits = self.following.pop(batch_id)
        self._outcomes.append(StatusOutcome(batch_id, outcome, None, batch, resubmits))

    def next_outcome(self) -> StatusOutcome | None:
        return self._outcomes.popleft() if self._outcomes else None

    def close(self) -> None:
        self.closed = True


class FakeDeadLetters:
    """The dead-letter topic behind the ``DeadLetterSink`` seam.

    Letters are confirmed at the next ``poll`` unless ``hold`` is set (a broker that does
    not answer); confirmed letters are in ``landed``.
    """

    def __init__(self, on_settled: Callable[[int], None]) -> None:
        self._on_settled = on_settled
        self.hold = False
        self.landed: list[DeadLetter] = []
        self._waiting: list[tuple[DeadLetter, int]] = []

    @property
    def pending(self) -> int:
        return len(self._waiting)

    def send(self, letter: DeadLetter, unit: int) -> None:
        self._waiting.append((letter, unit))

    def poll(self) -> None:
        if self.hold:
            return
        waiting, self._waiting = self._waiting, []
        units: dict[int, None] = {}
        for letter, unit in waiting:
            self.landed.append(letter)
            units[unit] = None
        for unit in units:
            self._on_settled(unit)

    def flush(self, timeout: float) -> int:
        self.poll()
        return self.pending
