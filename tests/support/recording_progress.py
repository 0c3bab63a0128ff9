"""An `AnswerProgress` that keeps every streamed partial, for tests that check what users would see."""

from __future__ import annotations


class RecordingProgress:
    def __init__(self) -> None:
        self.partials: list[str] = []
        self.queue_places: list[int] = []

    async def stage(self, step: str, iteration: int, total: int) -> None:
        return None

    async def partial(self, text: str) -> None:
        self.partials.append(text)

    async def queued(self, ahead: int) -> None:
        self.queue_places.append(ahead)
