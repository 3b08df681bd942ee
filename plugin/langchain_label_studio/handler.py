"""The drop-in ``LabelStudioCallbackHandler``: the langchain-community handler's API, made safe.

It takes the same arguments and environment variables, but does no network I/O in
the constructor or in any callback: each LLM call becomes a capture record queued to
the durable outbox, and a background worker writes the tasks.
"""

from __future__ import annotations

import os
from enum import Enum
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from .label_config import DEFAULT_CONFIGS, parse_layout
from .messages import model_name, to_dialogue, to_dialogue_item
from .pipeline import Pipeline, get_pipeline
from .project import DEFAULT_PROJECT_NAME, Project
from .prometheus import register as register_metrics
from .record import CaptureRecord
from .settings import Settings


class LabelStudioMode(Enum):
    """Capture mode: one prompt and its answer, or a chat dialogue."""

    PROMPT = "prompt"
    CHAT = "chat"


def get_default_label_configs(mode: str | LabelStudioMode) -> tuple[str, LabelStudioMode]:
    """The default label config of ``mode`` and the mode itself."""
    mode = LabelStudioMode(mode.value if isinstance(mode, LabelStudioMode) else mode)
    return DEFAULT_CONFIGS[mode.value], mode


class LabelStudioCallbackHandler(BaseCallbackHandler):
    """Send each LLM call's prompt and answer to Label Studio for review.

    >>> handler = LabelStudioCallbackHandler(project_name="My Project", mode="chat")
    >>> chat_model.invoke(messages, config={"callbacks": [handler]})

    Arguments default to ``LABEL_STUDIO_API_KEY``, ``LABEL_STUDIO_URL``
    (``http://localhost:8080`` when unset) and ``LABEL_STUDIO_PROJECT_ID``. With neither
    ``project_id`` nor an existing project of that name, the project is created on first
    delivery with ``project_config`` (or the default config of ``mode``).

    ``settings`` replaces ``api_key``, ``url`` and ``state_dir`` (and the environment) as a whole.

    Raises:
        ValueError: ``project_config`` has no TextArea to pre-fill the answer into, or
            ``mode`` is neither ``prompt`` nor ``chat``.
        TypeError: ``settings`` together with ``api_key``, ``url`` or ``state_dir``.
    """

    DEFAULT_PROJECT_NAME: str = DEFAULT_PROJECT_NAME
    run_inline = True  # callbacks only queue a record: safe to run on the event loop

    def __init__(
        self,
        api_key: str | None = None,
        url: str | None = None,
        project_id: int | None = None,
        project_name: str = DEFAULT_PROJECT_NAME,
        project_config: str | None = None,
        mode: str | LabelStudioMode = LabelStudioMode.PROMPT,
        *,
        state_dir: str | os.PathLike[str] | None = None,
        settings: Settings | None = None,
    ) -> None:
        super().__init__()
        settings = Settings.resolve(settings, type(self).__name__, url=url, api_key=api_key, state_dir=state_dir)
        self.url: str = settings.url
        self.api_key = settings.api_key
        self.project_name = project_name
        if project_config:
            layout = parse_layout(project_config)
            self.project_config, self.mode = project_config, LabelStudioMode(layout.mode)
        else:
            self.project_config, self.mode = get_default_label_configs(mode)
            layout = parse_layout(self.project_config)
        self.project_id = int(project_id) if project_id is not None else Settings.project_id_from_env()
        self.project = Project(
            name=project_name,
            mode=self.mode.value,
            label_config=project_config or None,
            id=self.project_id,
        )
        self.from_name, self.to_name = layout.from_name, layout.to_name
        self.value, self.input_type = layout.value_key, layout.input_type
        self.payload: dict[str, dict[str, Any]] = {}
        #: The outbox and delivery worker this handler feeds (shared per server).
        self.pipeline: Pipeline = get_pipeline(settings)
        register_metrics()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every capture so far is in Label Studio. True if done in time."""
        return self.pipeline.flush(timeout)

    # -- callbacks -----------------------------------------------------------------------
    def on_llm_start(self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID, **kwargs: Any) -> None:
        self.payload[str(run_id)] = {"prompts": list(prompts), "model": model_name(serialized, kwargs)}

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], *, run_id: UUID, **kwargs: Any
    ) -> None:
        self.payload[str(run_id)] = {
            "prompts": [to_dialogue(batch) for batch in messages],
            "model": model_name(serialized, kwargs),
        }

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        run = self.payload.pop(str(run_id), None)
        if run is None:
            return
        for prompt, generations in zip(run["prompts"], response.generations, strict=False):
            answers = [_answer(g) for g in generations]
            record = CaptureRecord(
                project=self.project.to_dict(),
                prompt=prompt,
                response="\n".join(answers),
                data={"run_id": str(run_id), **({"model": run["model"]} if run["model"] else {})},
                model_version=run["model"],
            )
            self.pipeline.submit(record)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.payload.pop(str(run_id), None)


def _answer(generation: Any) -> str:
    if isinstance(generation, ChatGeneration):
        return str(to_dialogue_item(generation.message)["content"])
    return str(generation.text)
