from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.unit.emulator.harness import InProcess


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., InProcess]]:
    """``make_emulator(**options)``: an in-process emulator on a fake clock."""
    made: list[InProcess] = []

    def make(**options: Any) -> InProcess:
        emulator = InProcess(**options)
        made.append(emulator)
        return emulator

    yield make
    for emulator in made:
        emulator.close()


@pytest.fixture
def emu(make_emulator: Callable[..., InProcess]) -> InProcess:
    return make_emulator()
