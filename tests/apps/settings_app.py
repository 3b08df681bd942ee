"""A chat graph wrapped with ``capture()`` at import time (default settings), served behind a
middleware with a redaction rule of its own: the middleware's rule must still apply."""

from __future__ import annotations

import os

from fastapi import FastAPI
from langserve import add_routes

from example_app.app import session_config
from example_app.graph import graph as example_graph
from langchain_label_studio import LabelStudioMiddleware, Project, capture

graph = capture(example_graph)  # default settings, made first
app = FastAPI()
add_routes(app, graph, path="/chat", per_req_config_modifier=session_config)
app.add_middleware(
    LabelStudioMiddleware,
    routes={"/chat": Project(os.environ["SETTINGS_PROJECT"], mode="chat")},
    redact_patterns={"ORDER": r"ORD-\d{6}"},
    health=True,
)
