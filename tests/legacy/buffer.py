"""The open batch of one id type and its rows, as the batcher (consumer/core/batcher.py)
keeps them: cells already percent-encoded, sizes tracked as they change. Plain slotted
state, no logic beyond the size sum."""

from __future__ import annotations

from consumer.core.model import IdType
from consumer.target.wire import header_line
from tests.legacy.carry import Cell


class Row:
    __slots__ = ("cells", "guard", "raw_size")

    def __init__(
        self, cells: dict[str, Cell], raw_size: int, guard: dict[str, Cell] | None = None
    ) -> None:
        self.cells = cells
        self.raw_size = raw_size
        self.guard = guard  # timestamps of values already applied (see carry.py)


class Buffer:
    """The open batch of one id type."""

    __slots__ = (
        "batch_id", "body_bytes", "columns", "event_count", "header_bytes", "id_type",
        "newest_occurred_at", "oldest_occurred_at", "rows", "started_at",
    )  # fmt: skip

    def __init__(self, batch_id: int, id_type: IdType) -> None:
        self.batch_id = batch_id
        self.id_type = id_type
        self.rows: dict[str, Row] = {}
        self.columns: dict[str, None] = {}  # an ordered set of encoded names
        self.header_bytes = len(header_line(id_type, []))
        self.body_bytes = 0  # ids, newlines and cell values; commas are rows * columns
        self.event_count = 0
        self.started_at = 0.0
        self.oldest_occurred_at = 0
        self.newest_occurred_at = 0

    @property
    def size(self) -> int:
        return self.header_bytes + self.body_bytes + len(self.rows) * len(self.columns)
