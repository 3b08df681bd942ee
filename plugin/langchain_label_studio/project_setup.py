"""What a new project gets besides its label config: a description, instructions for
annotators, and a Data Manager tab laid out for review.

Label Studio's Data Manager types every ``data`` column as text; a tab's
``columnsDisplayType`` makes it show, filter and sort a column as a number or a date
(the server casts to a number for ordering only when the tab says so). The "Review
queue" tab puts the tasks that matter first (``priority``, then the newest) and hides
the raw JSON columns, which stay in the task for export.
"""

from __future__ import annotations

from typing import Any

from .client import LabelStudioClient
from .label_config import COMPARISON_CONFIGS, DEFAULT_CONFIGS

REVIEW_TAB = "Review queue"

DESCRIPTION = {
    "prompt": "Answers of a LangChain app, captured from live traffic: rate them and correct the wrong ones.",
    "chat": "Conversations with a LangChain app, captured from live traffic: rate each answer, correct the wrong ones.",
    "comparison": "Two answers to the same live request, in random order: pick the better one.",
}

_COMMON = """
<p><b>Priority</b>: open the <i>Review queue</i> tab and work from the top: failed runs, answers users
disliked and answers users commented on come first (<code>priority</code> column, higher first).</p>
<p><b>Rating</b> judges the assistant's answer as it was given, before any correction of yours:
5 = correct, complete and well put; 4 = good, minor issues; 3 = usable but flawed;
2 = mostly wrong or unhelpful; 1 = wrong, harmful or off-topic.</p>
<p><b>Corrections</b> become training data as they are: write the answer the assistant should have
given, in its voice, complete (not a note about what is wrong). Do not add personal data; redacted
values such as <code>&lt;EMAIL&gt;</code> stay as they are.</p>
<p>Skip a task you cannot judge; it is never exported.</p>
"""

INSTRUCTIONS = {
    "prompt": "<p>Read the prompt on the left, then rate the answer on the right. If it is wrong, edit it into the "
    "right answer (click the text to edit).</p>" + _COMMON,
    "chat": "<p>Each block is one turn of the conversation: the user's message, any tool calls, and the assistant's "
    "answer. Rate every answer you can judge. Write a correction in the box of a turn only when its answer is "
    "wrong; the latest answer is pre-filled in its box: edit it to correct it.</p>" + _COMMON,
    "comparison": "<p>Both answers reply to the same request; which side each model is on is random. Pick the "
    "better answer; if both are wrong, you may write the right one in the box.</p>" + _COMMON,
}

#: Data Manager display types of the columns the plugin writes.
COLUMN_TYPES = {
    "priority": "Number",
    "turns": "Number",
    "feedback_score": "Number",
    "feedback_count": "Number",
    "feedback_mean": "Number",
    "captured_at": "Datetime",
}
#: Raw JSON columns hidden in the review tab (kept in the task for export).
HIDDEN = (
    "prompt",
    "state",
    "metadata",
    "tags",
    "headers",
    "feedback",
    "review_turns",
    "latest_turn",
    "latest_heading",
    "capture_id",
    "request_id",
    "session_ref",
)


#: Label Studio's own columns an annotator rarely needs, hidden so the previews come first.
SYSTEM_HIDDEN = (
    "inner_id",
    "annotations_ids",
    "annotations_results",
    "predictions_score",
    "predictions_model_versions",
    "predictions_results",
    "file_upload",
    "storage_filename",
    "created_at",
    "updated_at",
    "updated_by",
    "avg_lead_time",
    "draft_exists",
)


def default_config(spec: dict[str, Any]) -> str:
    """The label config a project of ``spec`` is created with when it names none."""
    return (COMPARISON_CONFIGS if spec.get("comparison") else DEFAULT_CONFIGS)[spec.get("mode") or "prompt"]


def create_project(client: LabelStudioClient, spec: dict[str, Any], label_config: str) -> dict[str, Any]:
    """Create the project of ``spec`` with its description and instructions (shown before labeling)."""
    kind = "comparison" if spec.get("comparison") else spec.get("mode", "prompt")
    return client.create_project(
        spec["title"],
        label_config,
        description=spec.get("description") or DESCRIPTION.get(kind, ""),
        expert_instruction=spec.get("instructions") or INSTRUCTIONS.get(kind, ""),
        show_instruction=True,
        show_skip_button=True,
    )


def review_tab(project_id: int) -> dict[str, Any]:
    """The Data Manager tab: priority first, numbers as numbers, times as times, raw JSON hidden."""
    data_col = "tasks:data.{}".format
    return {
        "project": project_id,
        "data": {
            "title": REVIEW_TAB,
            "type": "list",
            "target": "tasks",
            "ordering": [f"-{data_col('priority')}"],
            "filters": {"conjunction": "and", "items": []},
            "hiddenColumns": {
                "explore": [data_col(k) for k in HIDDEN] + [f"tasks:{k}" for k in SYSTEM_HIDDEN],
                "labeling": [data_col(k) for k in HIDDEN],
            },
            "columnsDisplayType": {data_col(k): v for k, v in COLUMN_TYPES.items()},
        },
    }


def ensure_review_tab(client: LabelStudioClient, project_id: int) -> bool:
    """Add the review tab to a project unless it has one; True when it was added."""
    if any((v.get("data") or {}).get("title") == REVIEW_TAB for v in client.views(project_id)):
        return False
    client.create_view(review_tab(project_id))
    return True
