"""LangChain messages as Label Studio dialogue items: ``{"role", "content"}`` with plain roles."""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import BaseMessage

_ROLES = {
    "human": "user",
    "user": "user",
    "ai": "assistant",
    "assistant": "assistant",
    "system": "system",
    "developer": "system",
    "tool": "tool",
    "function": "tool",
}


def role_of(message: BaseMessage) -> str:
    """``user``, ``assistant``, ``system`` or ``tool`` (a ChatMessage keeps its own role)."""
    kind = message.type
    if kind != "chat" and kind in _ROLES:
        return _ROLES[kind]
    role = getattr(message, "role", None) if kind == "chat" else None
    return _ROLES.get(str(role or kind).lower(), str(role or kind))


def _text_of(content: Any, parts: list[Any]) -> str:
    """Readable text of a message's content; non-text parts become placeholders."""
    if isinstance(content, str):
        return content
    pieces: list[str] = []
    for part in content or []:
        if isinstance(part, str):
            pieces.append(part)
        elif isinstance(part, dict) and part.get("type") == "text":
            pieces.append(str(part.get("text", "")))
        else:
            kind = part.get("type", "content") if isinstance(part, dict) else type(part).__name__
            kind = {"image_url": "image"}.get(kind, kind)
            pieces.append(f"[{kind}]")
            parts.append(part)
    return "\n".join(pieces)


def _call_text(call: dict[str, Any]) -> str:
    args = json.dumps(call.get("args", {}), ensure_ascii=False, default=str)
    return f"→ {call.get('name', 'tool')}({args})"


def to_dialogue_item(message: BaseMessage) -> dict[str, Any]:
    """One message as a dialogue item.

    Tool calls are appended to the assistant's text as ``→ name({args})`` and kept
    structured under ``tool_calls``; a tool result names its tool; non-text parts
    (images, files) show as ``[image]`` with the raw parts kept under ``parts``.
    """
    parts: list[Any] = []
    content = message.content
    text = content if type(content) is str else _text_of(content, parts)
    item: dict[str, Any] = {"role": role_of(message), "content": text}
    calls = getattr(message, "tool_calls", None) or []
    if calls:
        item["tool_calls"] = [{"id": c.get("id"), "name": c.get("name"), "args": c.get("args")} for c in calls]
        item["content"] = "\n".join([text, *(_call_text(c) for c in calls)]).strip()
    if message.type == "tool":
        name = getattr(message, "name", None)
        item["tool_call_id"] = getattr(message, "tool_call_id", None)
        if name:
            item["name"] = name
            item["content"] = f"[{name}] {text}"
    if parts:
        item["parts"] = parts
    return item


def to_dialogue(messages: list[BaseMessage]) -> list[dict[str, Any]]:
    """A list of LangChain messages as a dialogue."""
    return [to_dialogue_item(m) for m in messages]


def last_answer(messages: list[BaseMessage]) -> str | None:
    """The text of the last assistant message, if the dialogue ends with one."""
    for message in reversed(messages):
        if role_of(message) == "assistant":
            return _text_of(message.content, [])
        if role_of(message) == "user":
            return None
    return None


def model_name(serialized: dict[str, Any] | None, kwargs: dict[str, Any]) -> str | None:
    """The model's name from a run's invocation params or metadata, where known."""
    params = kwargs.get("invocation_params") or {}
    metadata = kwargs.get("metadata") or {}
    for value in (params.get("model_name"), params.get("model"), metadata.get("ls_model_name")):
        if value:
            return str(value)
    return None
