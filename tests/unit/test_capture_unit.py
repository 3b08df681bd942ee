"""A chat capture holds its conversation once; the task built from it shows the whole graph state."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import MemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from recording_pipeline import RecordingPipeline

from langchain_label_studio.capture import CaptureContext, CaptureHandler
from langchain_label_studio.label_config import DEFAULT_CONFIGS, parse_layout
from langchain_label_studio.project import Project
from langchain_label_studio.record import STATE_TAIL_KEY
from langchain_label_studio.task import build_task


def test_the_state_holds_the_dialogue_once_and_the_task_shows_it_whole() -> None:
    model = FakeMessagesListChatModel(responses=[AIMessage(f"answer {i}") for i in range(3)])
    builder = StateGraph(MessagesState)
    builder.add_node("respond", lambda state: {"messages": [model.invoke(state["messages"])]})
    builder.add_edge(START, "respond")
    graph = builder.compile(checkpointer=MemorySaver())
    sink = RecordingPipeline()
    context = CaptureContext(project=Project("Chats", mode="chat"), session_id="s1")
    config: dict[str, Any] = {"configurable": {"thread_id": "s1"}}
    for text in ("hello", "and then?", "thanks"):
        graph.invoke({"messages": [HumanMessage(text)]}, {**config, "callbacks": [CaptureHandler(sink, context)]})  # type: ignore[arg-type]

    record = sink.records[-1]
    assert [m["content"] for m in record.prompt] == ["hello", "answer 0", "and then?", "answer 1", "thanks"]
    assert record.response == "answer 2"
    assert record.data["state"]["messages"] is None  # not a second copy of the dialogue
    assert [m["content"] for m in record.data[STATE_TAIL_KEY]] == ["answer 2"]

    data = build_task(record, parse_layout(DEFAULT_CONFIGS["chat"]))["data"]
    assert STATE_TAIL_KEY not in data
    assert [(m["role"], m["content"]) for m in data["state"]["messages"]] == [
        ("user", "hello"),
        ("assistant", "answer 0"),
        ("user", "and then?"),
        ("assistant", "answer 1"),
        ("user", "thanks"),
        ("assistant", "answer 2"),
    ]

    # A before_capture hook that sets the state's messages keeps its own list.
    record.data["state"]["messages"] = [{"role": "user", "content": "scrubbed"}]
    data = build_task(record, parse_layout(DEFAULT_CONFIGS["chat"]))["data"]
    assert data["state"]["messages"] == [{"role": "user", "content": "scrubbed"}]


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value


def test_a_prompt_captures_tool_arguments_as_deep_as_a_chat_does() -> None:
    """A chat model's prompt becomes dialogue items at the same depth in either mode: arguments
    nested 17 deep are kept as data, not cut to their text."""
    model = FakeMessagesListChatModel(responses=[AIMessage("ok")])
    call = {"name": "lookup", "args": _nested(17), "id": "call-1"}
    prompt = [HumanMessage("hi"), AIMessage("", tool_calls=[call])]
    sink = RecordingPipeline()
    handler = CaptureHandler(sink, CaptureContext(project=Project("Prompts")))  # type: ignore[arg-type]
    model.invoke(prompt, {"callbacks": [handler]})

    [record] = sink.records
    args = record.prompt[1]["tool_calls"][0]["args"]
    for _ in range(17):
        args = args["k"]
    assert args == "leaf"
