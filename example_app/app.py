"""The example LangServe app: a prompt route (/joke) and a chat route (/chat, a LangGraph graph).

Run it with ``uvicorn example_app.app:app``. The one line that captures its traffic
into Label Studio is the ``app.add_middleware(LabelStudioMiddleware, ...)`` below.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI, Request
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langserve import add_routes

from langchain_label_studio import LabelStudioMiddleware, Project

from .graph import graph
from .models import chat_model

joke_chain = ChatPromptTemplate.from_template("Tell me a joke about {topic}") | chat_model() | StrOutputParser()


def session_config(config: dict[str, Any], request: Request) -> dict[str, Any]:
    """The LangGraph thread of a request: the X-Session-ID session of its user (new when absent).

    The thread is named by user and session together, so a client that knows (or guesses)
    another user's session id starts a thread of its own and never sees their conversation.
    The user is the authenticated one where the app has authentication, else (in this
    example) the X-User-ID header.
    """
    user = request.scope.get("user")
    if user is not None and getattr(user, "is_authenticated", False):
        name = str(user.identity)
    else:
        name = request.headers.get("x-user-id") or "anonymous"
    session = request.headers.get("x-session-id") or uuid.uuid4().hex
    config.setdefault("configurable", {})["thread_id"] = f"{name}:{session}"
    return config


def create_app(capture: bool = True) -> FastAPI:
    """The example app; ``capture=False`` builds it without the plugin (for comparison)."""
    app = FastAPI(title="langchain-label-studio example")
    add_routes(app, joke_chain, path="/joke")
    add_routes(app, graph, path="/chat", per_req_config_modifier=session_config)
    if capture:
        # The one line that sends every prompt and chat session to Label Studio:
        app.add_middleware(
            LabelStudioMiddleware,
            routes={"/joke": "Jokes", "/chat": Project("Support chats", mode="chat")},
            health=True,
        )
    return app


app = create_app()
