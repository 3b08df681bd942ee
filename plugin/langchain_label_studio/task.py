"""Turn a capture record into a Label Studio task for a given label config layout."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from .label_config import Layout
from .record import CaptureRecord, Dialogue


def dialogue_to_text(dialogue: Dialogue) -> str:
    """A dialogue as plain text: a lone message as it is, else one ``role: content`` paragraph each."""
    if len(dialogue) == 1:
        return str(dialogue[0].get("content", ""))
    return "\n\n".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in dialogue)


def build_task(record: CaptureRecord, layout: Layout) -> dict[str, Any]:
    """The task (``data`` and, when there is an answer, a ``predictions`` entry)."""
    prompt: Any = record.prompt
    if layout.mode == "chat" and isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    elif layout.mode == "prompt" and isinstance(prompt, list):
        prompt = dialogue_to_text(prompt)
    data: dict[str, Any] = dict(record.data)
    data[layout.value_key] = prompt
    data["capture_id"] = record.capture_id
    data["captured_at"] = datetime.fromtimestamp(record.captured_at, timezone.utc).isoformat()
    task: dict[str, Any] = {"data": data}
    if record.response is not None:
        task["predictions"] = [prediction(record, layout)]
    return task


def prediction(record: CaptureRecord, layout: Layout) -> dict[str, Any]:
    """The pre-filled answer as a Label Studio prediction."""
    return {
        "model_version": record.model_version or "langchain",
        "result": [
            {
                "from_name": layout.from_name,
                "to_name": layout.to_name,
                "type": "textarea",
                "value": {"text": [record.response or ""]},
            }
        ],
    }
