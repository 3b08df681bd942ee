"""A stand-in for the capture pipeline that keeps the records it is given (no outbox, no threads)."""

from __future__ import annotations

from langchain_label_studio.metrics import Metrics
from langchain_label_studio.record import CaptureRecord


class RecordingPipeline:
    """Takes what a handler or the challenger submits, in order, in ``records``."""

    def __init__(self) -> None:
        self.metrics = Metrics()
        self.records: list[CaptureRecord] = []

    def submit(self, record: CaptureRecord) -> bool:
        self.records.append(record)
        return True
