"""A file's width is not set by its widest row (issue 17, item 13).

Every row of a batch file has a cell per column, so an event of thousands of attributes
among ordinary ones padded every row of its file with thousands of empty cells. The
batcher cuts (trigger ``width``) before a row or column would make the empty cells exceed
``max_padding_ratio`` times the rest of the file. Checked here against the files
themselves (empty cells counted from the CSV, not from the batcher's counters) and
against the fold of the events (tests/utils.py), for arbitrary mixes of narrow and wide
events with carry-forward on.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.core.batcher import MAX_PADDING_RATIO, Batcher, BatchLimits
from consumer.core.carry import CarryForward
from consumer.core.model import ProfileUpdate, TopicPartition
from consumer.core.validate import to_update
from tests.integration.events import event
from tests.utils import fold_batches, fold_updates

TPS = [TopicPartition("crm", 0), TopicPartition("pos", 0)]
_WIDE_NAMES = [f"w{i:03d}" for i in range(300)]
_NARROW_NAMES = ["tier", "city", "points", "optIn", "Zoë"]


def _padding(body: bytes) -> tuple[int, int]:
    """(empty cells, bytes) of a batch file, read from the file itself."""
    lines = body.decode("ascii").splitlines()
    columns = len(lines[0].split(",")) - 1
    empty = sum(line.split(",")[1:].count("") for line in lines[1:])
    assert all(len(line.split(",")) == columns + 1 for line in lines[1:])
    return empty, len(body)


def _update(spec: dict[str, Any], offset: int) -> ProfileUpdate:
    record = event(spec["pid"], spec["attrs"], spec["occurred_at"])
    return to_update(record, TPS[spec["tp"]], offset)


_narrow = st.fixed_dictionaries(
    {
        "pid": st.sampled_from([f"p{i}" for i in range(12)]),
        "tp": st.integers(0, 1),
        "occurred_at": st.integers(0, 5),
        "attrs": st.dictionaries(
            st.sampled_from(_NARROW_NAMES),
            st.text("abc", min_size=1, max_size=4),
            min_size=1,
            max_size=3,
        ),
    }
)
_wide = st.fixed_dictionaries(
    {
        "pid": st.sampled_from([f"p{i}" for i in range(12)]),
        "tp": st.integers(0, 1),
        "occurred_at": st.integers(0, 5),
        "attrs": st.lists(st.sampled_from(_WIDE_NAMES), min_size=20, max_size=300).map(
            lambda names: {n: "v" for n in names}
        ),
    }
)


@settings(max_examples=150, deadline=None)
@given(
    specs=st.lists(st.one_of(_narrow, _narrow, _narrow, _wide), min_size=1, max_size=40),
    ratio=st.sampled_from([0.5, 1.0, MAX_PADDING_RATIO]),
    max_rows=st.integers(2, 20),
    # Carry-forward on (0 would turn it off, and without it an older event of another
    # partition in a later file is not refused: guarantee 2 needs it): a tight bound and a
    # roomy one.
    carry_max=st.sampled_from([1, 10_000]),
)
def test_no_file_pads_more_than_the_ratio_of_its_data_and_the_newest_values_win(
    specs: list[dict[str, Any]], ratio: float, max_rows: int, carry_max: int
) -> None:
    batcher = Batcher(BatchLimits(max_rows, 1_000_000, 1.0, ratio), CarryForward(carry_max))
    updates = [_update(spec, n) for n, spec in enumerate(specs)]
    for update in updates:
        batcher.add(update, 0.0)
        # Checked on every file as it is cut, and on the open buffer's own count too.
        for batch in batcher.ready:
            empty, size = _padding(batch.body)
            assert empty <= ratio * (size - empty), batch.trigger
    batcher.cut_all("test")
    files = batcher.take_ready()
    for batch in files:
        empty, size = _padding(batch.body)
        assert empty <= ratio * (size - empty)
    # Files applied in the order they were cut hold the newest value of every attribute.
    assert fold_batches(b.body for b in files) == fold_updates(updates)


def test_eight_wide_events_among_ordinary_ones_stay_close_to_the_data() -> None:
    # The mix, in process: 8 events of 5,000 attributes among 30,000 ordinary
    # events over 5,000 profiles; the files stay within 1 + ratio of the data they hold.
    batcher = Batcher(BatchLimits(500_000, 49_000_000, 10.0), CarryForward(100_000))
    wide = {f"a{i:04d}": "1" for i in range(5_000)}
    updates = []
    for n in range(30_008):
        if n % 3_750 == 1_000:
            spec = {"pid": f"wide-{n}", "tp": 0, "occurred_at": n, "attrs": wide}
        else:
            attrs = {"tier": f"gold{n % 7}", "city": f"c{n % 13}"} if n % 2 else {"points": n}
            spec = {"pid": f"p{n % 5_000}", "tp": 0, "occurred_at": n, "attrs": attrs}
        updates.append(_update(spec, n))
        batcher.add(updates[-1], 0.0)
    batcher.cut_all("test")
    files = batcher.take_ready()
    total = sum(len(b.body) for b in files)
    data = sum(size - empty for empty, size in map(_padding, (b.body for b in files)))
    assert total <= (1 + MAX_PADDING_RATIO) * data
    # Close to the data in absolute terms too: the narrow rows did not get 5,000 cells each.
    assert total < 3_000_000
    assert "width" in {b.trigger for b in files}
    assert fold_batches(b.body for b in files) == fold_updates(updates)
