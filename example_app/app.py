"""The example LangServe app: a prompt route (/joke) and a chat route (/chat, a LangGraph graph).

Run it with ``uvicorn example_app.app:app``. The one line that captures its traffic
into Label Studio is the ``app.add_middleware(LabelStudioMiddleware, ...)`` below.

``EXAMPLE_CHALLENGER_RATE`` (default 0) gives that share of requests a second answer from a
challenger model, compared side by side in "Jokes (A/B)" and "Support chats (A/B)".
``EXAMPLE_JOKES_PROJECT``/``EXAMPLE_CHATS_PROJECT`` rename the projects, and
``EXAMPLE_CHAT_CONFIG=legacy`` gives a new chat project the label config of before per-turn
review (last answer only), as projects created by earlier versions have.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from fastapi import FastAPI, Request
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langserve import add_routes

from langchain_label_studio import LabelStudioMiddleware, Project
from langchain_label_studio.label_config import LEGACY_CHAT_CONFIG

from .graph import graph
from .models import challenger_model, chat_model

joke_prompt = ChatPromptTemplate.from_template("Tell me a joke about {topic}")
joke_chain = joke_prompt | chat_model() | StrOutputParser()
#: The challenger of /joke takes the route's own input ({"topic": ...}); on /chat, a chat model
#: takes the conversation so far.
joke_challenger = joke_prompt | challenger_model() | StrOutputParser()


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
        rate = float(os.environ.get("EXAMPLE_CHALLENGER_RATE", "0"))
        jokes = Project(
            os.environ.get("EXAMPLE_JOKES_PROJECT", "Jokes"), challenger=joke_challenger, challenger_rate=rate
        )
        chats = Project(
            os.environ.get("EXAMPLE_CHATS_PROJECT", "Support chats"),
            mode="chat",
            label_config=LEGACY_CHAT_CONFIG if os.environ.get("EXAMPLE_CHAT_CONFIG") == "legacy" else None,
            challenger=challenger_model(),
            challenger_rate=rate,
        )
        # The one line that sends every prompt and chat session to Label Studio:
        app.add_middleware(LabelStudioMiddleware, routes={"/joke": jokes, "/chat": chats}, health=True)
    return app


app = create_app()
