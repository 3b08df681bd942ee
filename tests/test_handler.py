"""The drop-in handler against a real Label Studio: the original guide's examples, both token kinds."""

from __future__ import annotations

import pytest
from conftest import eventually, prefilled, project_tasks
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from langchain_label_studio import LabelStudioCallbackHandler
from langchain_label_studio.label_config import CHAT_CONFIG, PROMPT_CONFIG

CUSTOM_CONFIG = """
<View>
<Text name="prompt" value="$prompt"/>
<TextArea name="response" toName="prompt"/>
<TextArea name="user_feedback" toName="prompt"/>
<Rating name="rating" toName="prompt"/>
<Choices name="sentiment" toName="prompt">
    <Choice value="Positive"/>
    <Choice value="Negative"/>
</Choices>
</View>
"""


@pytest.mark.parametrize("token_kind", ["pat", "legacy"])
def test_prompt_mode_one_task_per_prompt(label_studio, admin, ls_env, project_name, monkeypatch, token_kind):
    if token_kind == "legacy":
        monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.legacy_token)
    handler = LabelStudioCallbackHandler(project_name=project_name, mode="prompt")
    llm = FakeListLLM(responses=["Once upon a time, a dog.", "Why did the chicken..."], callbacks=[handler])

    assert llm.invoke("Tell me a story about a dog.") == "Once upon a time, a dog."
    assert llm.invoke("Tell me a joke") == "Why did the chicken..."
    assert handler.flush(60), handler.pipeline.health()

    project, tasks = project_tasks(admin, project_name)
    assert project["label_config"].strip() == PROMPT_CONFIG.strip()
    assert [t["data"]["prompt"] for t in tasks] == ["Tell me a story about a dog.", "Tell me a joke"]
    assert [prefilled(t) for t in tasks] == ["Once upon a time, a dog.", "Why did the chicken..."]
    for task in tasks:
        [result] = task["predictions"][0]["result"]
        assert (result["from_name"], result["to_name"]) == ("response", "prompt")
        assert task["data"]["run_id"] and len(task["data"]["capture_id"]) == 32
        assert task["annotations"] == []


@pytest.mark.parametrize("token_kind", ["pat", "legacy"])
def test_chat_mode_plain_roles(label_studio, admin, ls_env, project_name, monkeypatch, token_kind):
    if token_kind == "legacy":
        monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.legacy_token)
    handler = LabelStudioCallbackHandler(mode="chat", project_name=project_name)
    chat = FakeListChatModel(responses=["😀 A joke! 🎉"], callbacks=[handler])

    reply = chat.invoke(
        [
            SystemMessage(content="Always use a lot of emojis"),
            HumanMessage(content="Hi"),
            AIMessage(content="Hello! 👋"),
            HumanMessage(content="Tell me a joke"),
        ]
    )
    assert reply.content == "😀 A joke! 🎉"
    assert handler.flush(60), handler.pipeline.health()

    project, [task] = project_tasks(admin, project_name)
    assert project["label_config"].strip() == CHAT_CONFIG.strip()
    assert task["data"]["prompt"] == [
        {"role": "system", "content": "Always use a lot of emojis"},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! 👋"},
        {"role": "user", "content": "Tell me a joke"},
    ]
    assert prefilled(task) == "😀 A joke! 🎉"
    [result] = task["predictions"][0]["result"]
    assert (result["from_name"], result["to_name"]) == ("response", "dialogue")


def test_custom_project_config(admin, ls_env, project_name):
    handler = LabelStudioCallbackHandler(project_name=project_name, project_config=CUSTOM_CONFIG)
    llm = FakeListLLM(responses=["A short poem."], callbacks=[handler])
    llm.invoke("Write a poem")
    assert handler.flush(60), handler.pipeline.health()

    project, [task] = project_tasks(admin, project_name)
    assert project["label_config"].strip() == CUSTOM_CONFIG.strip()
    assert task["data"]["prompt"] == "Write a poem"
    assert prefilled(task) == "A short poem."


def test_custom_config_with_other_names(admin, ls_env, project_name):
    config = '<View><Text name="q" value="$question"/><TextArea name="answer" toName="q"/></View>'
    handler = LabelStudioCallbackHandler(project_name=project_name, project_config=config)
    FakeListLLM(responses=["42"], callbacks=[handler]).invoke("What is the answer?")
    assert handler.flush(60), handler.pipeline.health()

    _, [task] = project_tasks(admin, project_name)
    assert task["data"]["question"] == "What is the answer?"
    [result] = task["predictions"][0]["result"]
    assert (result["from_name"], result["to_name"], result["value"]["text"]) == ("answer", "q", ["42"])


def test_existing_project_by_id(admin, ls_env, project_name, monkeypatch):
    created = admin.create_project(project_name, PROMPT_CONFIG)
    monkeypatch.setenv("LABEL_STUDIO_PROJECT_ID", str(created["id"]))
    handler = LabelStudioCallbackHandler()
    assert handler.project_id == created["id"]
    FakeListLLM(responses=["yes"], callbacks=[handler]).invoke("Is it there?")
    assert handler.flush(60), handler.pipeline.health()

    _, [task] = project_tasks(admin, project_name)
    assert task["data"]["prompt"] == "Is it there?"


def test_project_whose_config_does_not_fit_is_not_written(admin, ls_env, project_name):
    created = admin.create_project(project_name, PROMPT_CONFIG)
    handler = LabelStudioCallbackHandler(project_id=created["id"], mode="chat")
    FakeListChatModel(responses=["hi"], callbacks=[handler]).invoke("hello")
    eventually(lambda: handler.pipeline.health()["last_error"], "a delivery attempt")
    assert not handler.flush(0.5)

    health = handler.pipeline.health()
    assert health["pending"] == 1
    assert "cannot take chat captures" in health["last_error"]
    assert admin.list_tasks(created["id"], 1) == []


def test_batch_of_prompts_in_one_call(admin, ls_env, project_name):
    handler = LabelStudioCallbackHandler(project_name=project_name)
    llm = FakeListLLM(responses=["a", "b", "c"], callbacks=[handler])
    assert llm.batch(["p1", "p2", "p3"]) == ["a", "b", "c"]
    assert handler.flush(60)

    _, tasks = project_tasks(admin, project_name)
    assert sorted((t["data"]["prompt"], prefilled(t)) for t in tasks) == [("p1", "a"), ("p2", "b"), ("p3", "c")]


def test_default_project_name_is_dated(admin, ls_env):
    from datetime import datetime

    handler = LabelStudioCallbackHandler()
    title = datetime.now().strftime("LangChain-%Y-%m-%d")
    assert handler.project.title() == title
    marker = f"dated project {datetime.now().timestamp()}"
    FakeListLLM(responses=["ok"], callbacks=[handler]).invoke(marker)
    assert handler.flush(60)
    _, tasks = project_tasks(admin, title)
    assert [t["data"]["prompt"] for t in tasks if t["data"]["prompt"] == marker] == [marker]
