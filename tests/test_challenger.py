"""The challenger's pool: bounded, never in the request's way, and its comparisons shaped for Pairwise."""

from __future__ import annotations

import threading

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.runnables import RunnableLambda
from recording_pipeline import RecordingPipeline

from langchain_label_studio import Project
from langchain_label_studio.challenger import ChallengerPool, Job, compare
from langchain_label_studio.record import CaptureRecord


def _record(project: Project) -> str:
    record = CaptureRecord(
        project=project.to_dict(),
        prompt="Tell me a joke about owls",
        response="model answer",
        data={"user_id": "u", "route": "/joke", "state": {"big": "x"}},
    )
    return record.to_json()


def test_full_queue_drops_and_counts_without_waiting():
    gate = threading.Event()
    slow = RunnableLambda(lambda _: gate.wait(10) and "late")
    project = Project("Jokes", challenger=slow, challenger_concurrency=1, challenger_queue=2)
    pool, pipeline = ChallengerPool(1, 2), RecordingPipeline()
    offered = [pool.offer(Job(project, pipeline, _record(project), {"topic": "owls"})) for _ in range(6)]
    # one running, two waiting, the rest dropped at once
    assert offered.count(False) >= 3 and pool.dropped == offered.count(False)
    assert pipeline.metrics.skipped["challenger_dropped"] == pool.dropped
    gate.set()
    pool.join()
    assert len(pipeline.records) == offered.count(True)


def test_comparison_record_in_random_order_with_sources():
    challenger = FakeListChatModel(responses=["challenger answer"] * 40)
    project = Project("Jokes", challenger=challenger)
    sides = set()
    for _ in range(40):
        record = compare(Job(project, RecordingPipeline(), _record(project), "Tell me a joke about owls"))
        assert record is not None and record.project["title"] == "Jokes (A/B)" and record.project["comparison"]
        data = record.data
        answers = {data["left_source"]: data["answer_left"], data["right_source"]: data["answer_right"]}
        assert answers == {"model": "model answer", "challenger": "challenger answer"}
        assert "state" not in data and record.response is None and record.session is None
        sides.add(data["left_source"])
    assert sides == {"model", "challenger"}
