"""LangChain messages as dialogue items (no server needed)."""

from __future__ import annotations

from langchain_core.messages import AIMessage, ChatMessage, HumanMessage, SystemMessage, ToolMessage

from langchain_label_studio.messages import last_answer, to_dialogue
from langchain_label_studio.record import CaptureRecord
from langchain_label_studio.sanitize import SCAN_MARGIN, Sanitizer, finish


def test_roles_are_plain_names():
    dialogue = to_dialogue(
        [
            SystemMessage("sys"),
            HumanMessage("hi"),
            AIMessage("hello"),
            ToolMessage("42", tool_call_id="c1", name="calc"),
            ChatMessage(role="critic", content="meh"),
        ]
    )
    assert [d["role"] for d in dialogue] == ["system", "user", "assistant", "tool", "critic"]
    assert dialogue[3] == {"role": "tool", "content": "[calc] 42", "tool_call_id": "c1", "name": "calc"}


def test_images_become_placeholders_with_raw_parts_kept():
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    [item] = to_dialogue([HumanMessage(content=[{"type": "text", "text": "What is this?"}, image])])
    assert item["content"] == "What is this?\n[image]"
    assert item["parts"] == [image]


def test_tool_calls_are_readable_and_structured():
    msg = AIMessage("Let me check.", tool_calls=[{"name": "get_weather", "args": {"city": "Oslo"}, "id": "c1"}])
    [item] = to_dialogue([msg])
    assert item["content"] == 'Let me check.\n→ get_weather({"city": "Oslo"})'
    assert item["tool_calls"] == [{"id": "c1", "name": "get_weather", "args": {"city": "Oslo"}}]


def test_last_answer_only_when_the_dialogue_ends_with_one():
    assert last_answer([HumanMessage("q"), AIMessage("a")]) == "a"
    assert last_answer([HumanMessage("q"), AIMessage("a"), HumanMessage("q2")]) is None


def test_sanitizer_policy():
    clean = Sanitizer(max_chars=10)
    assert clean.value({"k": (1, object)})["k"][0] == 1
    long = "0123456789" * 500
    assert len(clean.text(long)) < len(long)  # cut, but only past the scan margin: redaction sees it whole
    assert clean.text(long).startswith(long[: 10 + SCAN_MARGIN])

    record = CaptureRecord({"title": "P"}, prompt=[{"role": "user", "content": "a\x00b"}], response=long, data={})
    finish(record, max_chars=10)
    assert record.prompt == [{"role": "user", "content": "ab"}]
    assert record.response == f"0123456789…[truncated {len(long) - 10} chars]"
    assert record.data["truncated"] is True

    record = CaptureRecord({"title": "P"}, prompt="x\ud800y", data={"k\ud800": clean.text(long)})
    finish(record, max_chars=10)
    assert (record.prompt, list(record.data)) == ("x\ufffdy", ["k\ufffd", "truncated"])
    assert record.data["k\ufffd"] == f"0123456789…[truncated {len(long) - 10} chars]"  # counts both cuts
