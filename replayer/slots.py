"""User slots: a number per running virtual user, unique across the whole run, handed out by the master.

Plain Python (no Locust), so that it is tested on its own.
"""

from __future__ import annotations

import heapq


class Slots:
    """User slots: the lowest free number first, and a lost worker's slots free again."""

    def __init__(self) -> None:
        self.free: list[int] = []
        self.next = 0
        self.holders: dict[int, str] = {}

    def take(self, holder: str) -> int:
        slot = heapq.heappop(self.free) if self.free else self._new()
        self.holders[slot] = holder
        return slot

    def _new(self) -> int:
        self.next += 1
        return self.next - 1

    def give_back(self, slot: int, holder: str) -> None:
        if self.holders.get(slot) == holder:
            del self.holders[slot]
            heapq.heappush(self.free, slot)

    def release(self, holder: str) -> None:
        for slot in [s for s, h in self.holders.items() if h == holder]:
            self.give_back(slot, holder)
