"""A stateless chat app, as run behind a load balancer: the client sends the whole dialogue
each turn, so any replica can answer any turn. Captures go to the PostgreSQL outbox named by
``LABEL_STUDIO_OUTBOX_URL``."""

from __future__ import annotations

import os

from fastapi import FastAPI
from langserve import add_routes

from example_app.models import DeterministicChatModel
from langchain_label_studio import LabelStudioMiddleware, Project

app = FastAPI()
add_routes(app, DeterministicChatModel(), path="/chat")
app.add_middleware(
    LabelStudioMiddleware, routes={"/chat": Project(os.environ["REPLICA_PROJECT"], mode="chat")}, health=True
)
