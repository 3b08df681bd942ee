"""Delivery: lease a batch from the outbox and write it to Label Studio, once.

- Prompt captures are bulk-imported (one request per batch).
- A chat session is one task: its newest capture (by capture time, so turns captured
  by different processes or replicas keep their order) creates the task or replaces
  the task's data and pre-filled answer; a capture older than the one the task shows is
  superseded. Once an annotator has worked on the task, the session's next capture
  starts a new task.
- A batch whose outcome is unknown is looked up by ``capture_id`` before it is sent
  again, so retries never make a second task.
- A batch refused with a 4xx is split until the bad record is alone; that record goes
  to the dead letters with Label Studio's reason.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

from .client import AuthError, LabelStudioClient, LabelStudioError, Rejected, Unavailable
from .feedback import FEEDBACK_KEYS
from .gil import step_aside
from .label_config import DEFAULT_CONFIGS, Layout, check_mode, parse_layout
from .metrics import Metrics
from .outbox.base import Claimed, Outbox
from .record import CaptureRecord
from .task import build_task, prediction


class ProjectConfigError(LabelStudioError):
    """The target project cannot take captures (its label config does not fit the mode)."""


@dataclass(frozen=True)
class ResolvedProject:
    id: int
    layout: Layout


def backoff(attempt: int, base_s: float = 1.0, cap_s: float = 60.0) -> float:
    """Exponential backoff with full jitter: a random delay up to ``base * 2**attempt``."""
    return random.uniform(base_s / 2, min(cap_s, base_s * 2 ** min(attempt, 16)))


class Delivery:
    """Moves batches from an outbox to Label Studio. Used by one worker thread."""

    def __init__(
        self,
        client: LabelStudioClient,
        outbox: Outbox,
        metrics: Metrics,
        *,
        batch_size: int = 500,
        lease_s: float = 120.0,
        max_request_bytes: int = 8 << 20,
    ) -> None:
        self.client = client
        self.outbox = outbox
        self.metrics = metrics
        self.batch_size = batch_size
        self.lease_s = lease_s
        self.max_request_bytes = max_request_bytes
        self.failures = 0
        #: After a failure the worker rests until then (``time.time()``), whatever is queued.
        self.paused_until = 0.0
        self._projects: dict[str, ResolvedProject] = {}

    # -- one step ----------------------------------------------------------------------
    def step(self) -> int:
        """Deliver one batch. Returns how many records it took (delivered or not)."""
        batch = self.outbox.claim(self.batch_size, self.lease_s)
        if not batch:
            return 0
        seqs = [c.seq for c in batch]
        try:
            project = self._resolve(batch[0].record.project)
            self._deliver(project, batch)
        except (AuthError, ProjectConfigError) as exc:
            self.failures += 1
            self.metrics.error(str(exc))
            self._retry(seqs, backoff(self.failures, base_s=10.0, cap_s=300.0))
        except Unavailable as exc:
            self.failures += 1
            self.metrics.error(str(exc))
            self._retry(seqs, backoff(self.failures))
        except LabelStudioError as exc:
            self.failures += 1
            self.metrics.error(str(exc))
            self._retry(seqs, backoff(self.failures, base_s=5.0, cap_s=300.0))
        else:
            self.failures = 0
        return len(batch)

    def _retry(self, seqs: list[int], delay: float) -> None:
        # Records already removed (delivered before the failure) are simply not updated.
        self.outbox.retry_later(seqs, delay)
        self.paused_until = time.time() + delay
        self.metrics.add("retried", len(seqs))

    def resume(self) -> None:
        """Forget the backoff: the next step runs at once."""
        self.failures = 0
        self.paused_until = 0.0

    # -- projects ----------------------------------------------------------------------
    def _resolve(self, spec: dict[str, Any]) -> ResolvedProject:
        key = f"id:{spec['id']}" if spec.get("id") is not None else f"title:{spec['title']}"
        if key in self._projects:
            return self._projects[key]
        if spec.get("id") is not None:
            project = self.client.get_project(int(spec["id"]))
        else:
            with self.outbox.lock("projects"):  # processes sharing the outbox create a project once
                project = self.client.find_project(spec["title"])
                if project is None:
                    config = spec.get("label_config") or DEFAULT_CONFIGS[spec["mode"]]
                    project = self.client.create_project(spec["title"], config)
        label = project.get("label_config") or ""
        name = f"project {project.get('title', '')!r} (id {project['id']})"
        try:
            layout = parse_layout(label)
            check_mode(layout, spec["mode"])
        except ValueError as exc:
            raise ProjectConfigError(
                f"Label Studio {name} cannot take {spec['mode']} captures: {exc} "
                "Fix the project's labeling interface or map the route to another project; "
                "captures wait in the outbox meanwhile."
            ) from None
        resolved = ResolvedProject(int(project["id"]), layout)
        self._projects[key] = resolved
        return resolved

    # -- a batch of one project --------------------------------------------------------
    def _deliver(self, project: ResolvedProject, batch: list[Claimed]) -> None:
        feedback = [c for c in batch if c.record.kind == "feedback"]
        batch = [c for c in batch if c.record.kind != "feedback"]
        pending = self._settle_unknown(project, batch)
        singles = [c for c in pending if c.record.session is None]
        sessions: dict[str, list[Claimed]] = {}
        for c in pending:
            if c.record.session is not None:
                sessions.setdefault(c.record.session, []).append(c)

        new_sessions: list[list[Claimed]] = []
        for turns in sessions.values():
            if not self._update_session(project, turns):
                new_sessions.append(turns)

        for chunk in _by_size([[c] for c in singles] + new_sessions, self.max_request_bytes):
            self._import(project, chunk)
        for c in feedback:
            self._add_feedback(project, c)

    # -- end-user feedback ------------------------------------------------------------------
    def _add_feedback(self, project: ResolvedProject, claimed: Claimed) -> None:
        """Append one feedback to its task(s); idempotent, so a retried write adds it once."""
        record = claimed.record
        task_ids = self._feedback_tasks(project, record)
        if not task_ids:  # its capture is not in Label Studio yet (or was deleted)
            if claimed.attempts >= 30:
                self.outbox.dead_letter(claimed.seq, "no Label Studio task for the capture this feedback names")
                self.metrics.add("dead_lettered")
            else:
                self.outbox.retry_later([claimed.seq], backoff(claimed.attempts, base_s=2.0, cap_s=600.0))
            return
        entry = {**record.data["feedback"], "id": record.capture_id}
        for task_id in task_ids:
            task = self.client.get_task(task_id)
            if task is None:
                continue
            data = dict(task.get("data") or {})
            entries = list(data.get("feedback") or [])
            if any(isinstance(e, dict) and e.get("id") == entry["id"] for e in entries):
                continue
            entries.append(entry)
            data.update(feedback=entries, feedback_score=entry["score"], feedback_count=len(entries))
            self.client.update_task(task_id, data)
        self.outbox.done([claimed.seq])
        self.metrics.add("delivered")

    def _feedback_tasks(self, project: ResolvedProject, record: CaptureRecord) -> list[int]:
        target = record.target or {}
        session = target.get("session_id")
        if session:
            mapping = self.outbox.session_task(record.project_key, session)
            if mapping is not None:
                return [mapping.task_id]
            tasks = self.client.list_tasks(project.id, 1, 100, where={"session_id": session})
            return [max(t["id"] for t in tasks)] if tasks else []
        tasks = self.client.list_tasks(project.id, 1, 100, where={"request_id": target.get("request_id")})
        return [t["id"] for t in tasks]

    def _settle_unknown(self, project: ResolvedProject, batch: list[Claimed]) -> list[Claimed]:
        """Find in Label Studio the records an earlier send may have created."""
        unsure = [c for c in batch if c.sent]
        if not unsure:
            return batch
        found = self.client.tasks_by_data(project.id, "capture_id", [c.record.capture_id for c in unsure])
        settled: set[int] = set()
        for c in unsure:
            task_id = found.get(c.record.capture_id)
            if task_id is None:
                continue
            if c.record.session is not None:
                self.outbox.set_session_task(
                    c.record.project_key, c.record.session, task_id, None, c.record.captured_at
                )
                settled.update(o.seq for o in batch if o.record.session == c.record.session and _order(o) <= _order(c))
            else:
                settled.add(c.seq)
        if settled:
            self.outbox.done(sorted(settled))
            self.metrics.add("delivered", len(settled))
        return [c for c in batch if c.seq not in settled]

    def _update_session(self, project: ResolvedProject, turns: list[Claimed]) -> bool:
        """Write the newest turn into the session's task. False when a new task is needed."""
        latest = _newest(turns)
        record = latest.record
        mapping = self.outbox.session_task(record.project_key, record.session or "")
        if mapping is None:
            return False
        if mapping.captured_at is not None and record.captured_at < mapping.captured_at:
            # The task already shows a later turn (captured by another process): nothing to write.
            self.outbox.done([c.seq for c in turns])
            self.metrics.add("delivered", len(turns))
            return True
        with self.outbox.lock("import"):  # one write at a time per server, as for imports
            task = self.client.get_task(mapping.task_id)
            if task is None or _is_annotated(task):
                return False
            data = build_task(record, project.layout)["data"]
            data.update({k: task["data"][k] for k in FEEDBACK_KEYS if k in (task.get("data") or {})})
            self.client.update_task(task["id"], data)
            if record.response is not None:
                pred = prediction(record, project.layout)
                existing = task.get("predictions") or []
                if existing:
                    self.client.update_prediction(existing[-1]["id"], pred)
                else:
                    self.client.create_prediction(task["id"], pred)
        self.outbox.set_session_task(record.project_key, record.session or "", task["id"], None, record.captured_at)
        self.outbox.done([c.seq for c in turns])
        self.metrics.add("updated", len(turns))
        self.metrics.add("delivered", len(turns))
        return True

    def _import(self, project: ResolvedProject, groups: list[list[Claimed]]) -> None:
        """Import one task per group (the group's newest record)."""
        batch = []
        for i, group in enumerate(groups):
            task = self._build(project, group)
            if task is not None:
                batch.append((group, task))
            step_aside(i)
        if batch:
            self._send(project, batch)

    def _send(self, project: ResolvedProject, batch: list[tuple[list[Claimed], dict[str, Any]]]) -> None:
        """Import built tasks; a rejected batch is split until the bad record is alone."""
        seqs = [c.seq for group, _ in batch for c in group]
        self.outbox.mark_sent(seqs)
        try:
            # One write at a time per server (imports and session updates): Label Studio on
            # SQLite can drop the predictions of imports that run beside other writes.
            with self.outbox.lock("import"):
                ids = self.client.import_tasks(project.id, [task for _, task in batch])
        except Rejected as exc:
            if len(batch) == 1:
                group = batch[0][0]
                for c in group:
                    self.outbox.dead_letter(c.seq, str(exc))
                self.metrics.add("dead_lettered", len(group))
                self.metrics.error(f"dead-lettered capture {_newest(group).record.capture_id}: {exc}")
                return
            half = len(batch) // 2
            self._send(project, batch[:half])
            self._send(project, batch[half:])
            return
        for (group, _), task_id in zip(batch, ids, strict=False):
            newest = _newest(group)
            if newest.record.session is not None:
                self.outbox.set_session_task(
                    newest.record.project_key, newest.record.session, task_id, None, newest.record.captured_at
                )
        self.outbox.done(seqs)
        self.metrics.add("delivered", len(seqs))

    def _build(self, project: ResolvedProject, group: list[Claimed]) -> dict[str, Any] | None:
        """The group's task; a record that cannot be made into one is dead-lettered (not left blocking)."""
        try:
            return build_task(_newest(group).record, project.layout)
        except Exception as exc:
            for c in group:
                self.outbox.dead_letter(c.seq, f"cannot build a task from this capture: {exc!r}")
            self.metrics.add("dead_lettered", len(group))
            self.metrics.error(f"dead-lettered a capture that cannot be made into a task: {exc!r}")
            return None


def _order(claimed: Claimed) -> tuple[float, int]:
    return (claimed.record.captured_at, claimed.seq)


def _newest(group: list[Claimed]) -> Claimed:
    """The latest capture of a group (by capture time, then by arrival in the outbox)."""
    return max(group, key=_order)


def _by_size(groups: list[list[Claimed]], max_bytes: int) -> list[list[list[Claimed]]]:
    """Split groups into import requests of at most ``max_bytes`` (a lone big record goes alone)."""
    chunks: list[list[list[Claimed]]] = []
    size = 0
    for group in groups:
        weight = _newest(group).size + 256
        if not chunks or size + weight > max_bytes:
            chunks.append([])
            size = 0
        chunks[-1].append(group)
        size += weight
    return chunks


def _is_annotated(task: dict[str, Any]) -> bool:
    return bool(task.get("total_annotations") or task.get("cancelled_annotations") or task.get("annotations"))
