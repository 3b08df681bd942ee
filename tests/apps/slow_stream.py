"""A LangServe app whose stream is slow, for client-disconnect tests."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from fastapi import FastAPI
from langchain_core.runnables import RunnableGenerator
from langserve import add_routes

from langchain_label_studio import LabelStudioMiddleware


async def slow_words(inputs: AsyncIterator[dict]) -> AsyncIterator[str]:
    async for value in inputs:
        for i in range(int(value.get("words", 50))):
            await asyncio.sleep(0.1)
            yield f"word{i} "


app = FastAPI()
add_routes(app, RunnableGenerator(slow_words), path="/slow")
app.add_middleware(LabelStudioMiddleware, routes={"/slow": os.environ["SLOW_PROJECT"]}, health=True)
