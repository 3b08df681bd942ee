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

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .client import AuthError, LabelStudioClient, LabelStudioError, Rejected, Unavailable
from .feedback import FEEDBACK_KEYS
from .gil import step_aside
from .identity import target_ref
from .label_config import Layout, check_mode, parse_layout
from .metrics import Metrics
from .outbox.base import Claimed, Outbox
from .project_setup import create_project, default_config, ensure_review_tab
from .record import CaptureRecord
from .task import build_task, prediction, priority
from .trace_links import TraceLinks


class ProjectConfigError(LabelStudioError):
    """The target project cannot take captures (its label config does not fit the mode)."""


class ProjectGone(LabelStudioError):
    """The project was deleted in Label Studio after it was looked up."""


class ProjectMissing(LabelStudioError):
    """Feedback names a project that does not exist (feedback never creates one)."""


#: Outbox fact: when the write in progress started (empty once it has ended with a known outcome).
WRITE_STARTED = "write_started"
#: Feedback records delivered per step, after each batch of captures.
FEEDBACK_BATCH = 50
#: Attempts before feedback whose capture has no task is dead-lettered (about an hour of backoff).
FEEDBACK_ATTEMPTS = 16
#: Feedback entries a task keeps (the latest); ``feedback_count`` and ``feedback_mean`` count all.
MAX_FEEDBACK_ENTRIES = 20


def _entry(record: CaptureRecord) -> dict[str, Any]:
    return {**record.data["feedback"], "id": record.capture_id}


def add_feedback(data: dict[str, Any], entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A task's ``data`` with new feedback entries added (None when all are there already).

    The latest :data:`MAX_FEEDBACK_ENTRIES` entries are kept; ``feedback_count`` and
    ``feedback_mean`` stay exact over all of them, ``feedback_score`` is the latest score.
    """
    kept = [e for e in data.get("feedback") or [] if isinstance(e, dict)]
    known = {e.get("id") for e in kept}
    new = [e for e in entries if e["id"] not in known]
    if not new:
        return None
    count = data.get("feedback_count")
    count = count if isinstance(count, int) and count >= len(kept) else len(kept)
    mean = data.get("feedback_mean")
    if not isinstance(mean, (int, float)):
        scores = [e["score"] for e in kept if isinstance(e.get("score"), (int, float))]
        mean = sum(scores) / len(scores) if scores else 0.0
    total = mean * count + sum(e["score"] for e in new)
    count += len(new)
    data.update(
        feedback=(kept + new)[-MAX_FEEDBACK_ENTRIES:],
        feedback_score=new[-1]["score"],
        feedback_count=count,
        feedback_mean=round(total / count, 6),
    )
    return data


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
        self._tabbed: set[int] = set()
        self.trace_links = TraceLinks()

    @contextlib.contextmanager
    def _one_write(self) -> Iterator[Callable[[], None]]:
        """One write at a time to the server, across every process that shares the outbox.

        Every request that changes something in Label Studio runs inside this block. Label Studio
        on SQLite drops the predictions of an import that runs beside another write (its import
        retries a locked transaction after taking the predictions out of the tasks). A write
        whose outcome is unknown (its process died during the request, or the request failed
        after it was sent) may still be running in Label Studio, so the next write waits until
        the client's timeout has passed since that request started, or failed. Yields ``mark``,
        to call before each further write request of the block.
        """

        def mark() -> None:
            self.outbox.set_meta(**{WRITE_STARTED: repr(time.time())})

        with self.outbox.lock("import"):
            started = self.outbox.meta().get(WRITE_STARTED)
            if started:
                wait = float(started) + self.client.timeout - time.time()
                if wait > 0:
                    time.sleep(min(wait, self.client.timeout))
            mark()
            try:
                yield mark
            except Unavailable as exc:
                if exc.maybe_applied:
                    mark()  # it may still run in Label Studio: a whole timeout from now
                else:
                    self.outbox.set_meta(**{WRITE_STARTED: ""})
                raise
            except BaseException:  # refused, or a failure of this process: nothing left running
                self.outbox.set_meta(**{WRITE_STARTED: ""})
                raise
            self.outbox.set_meta(**{WRITE_STARTED: ""})

    # -- one step ----------------------------------------------------------------------
    def step(self) -> int:
        """Deliver one batch of captures, then a few feedback records. Returns how many records
        it took (delivered or not).

        Feedback has queues of its own and a small share of each step, so a flood of it can
        delay neither captures nor other projects.
        """
        taken = self._step(self.outbox.claim(self.batch_size, self.lease_s))
        if self.paused_until <= time.time():
            taken += self._step(self.outbox.claim(FEEDBACK_BATCH, self.lease_s, feedback=True))
        return taken

    def _step(self, batch: list[Claimed]) -> int:
        if not batch:
            return 0
        seqs = [c.seq for c in batch]
        try:
            self._deliver(batch)
        except ProjectGone as exc:  # deleted in Label Studio: found or created again on the next step
            self.metrics.error(str(exc))
            self._retry(seqs, 1.0)
        except ProjectMissing as exc:  # feedback for a project that does not exist (yet): it never creates one
            self.metrics.error(str(exc))
            self._feedback_later(batch)
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

    def _deliver(self, batch: list[Claimed]) -> None:
        spec = batch[0].record.project
        if batch[0].record.kind == "feedback":
            self._add_feedback(self._resolve(spec, create=False), batch)
            return
        project = self._resolve(spec)
        try:
            self._deliver_captures(project, batch)
        except Rejected as exc:
            if exc.status == 404:  # the project was deleted: forget it
                self._forget(spec)
                raise ProjectGone(f"Label Studio project {project.id} is gone; looking it up again") from None
            raise

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
    @staticmethod
    def _key(spec: dict[str, Any]) -> str:
        return f"id:{spec['id']}" if spec.get("id") is not None else f"title:{spec['title']}"

    def _forget(self, spec: dict[str, Any]) -> None:
        self._projects.pop(self._key(spec), None)

    def _resolve(self, spec: dict[str, Any], create: bool = True) -> ResolvedProject:
        key = self._key(spec)
        if key in self._projects:
            return self._projects[key]
        if spec.get("id") is not None:
            try:
                project = self.client.get_project(int(spec["id"]))
            except Rejected as exc:
                if exc.status == 404:
                    raise ProjectConfigError(
                        f"Label Studio project {spec['id']} does not exist: map the route to an existing "
                        "project; captures wait in the outbox meanwhile."
                    ) from None
                raise
        elif not create:
            found = self.client.find_project(spec["title"])
            if found is None:
                raise ProjectMissing(f"no Label Studio project {spec['title']!r} for this feedback (yet)")
            project = found
        else:
            with self.outbox.lock("projects"):  # processes sharing the outbox create a project once
                existing = self.client.find_project(spec["title"])
                if existing is None:
                    with self._one_write():
                        existing = create_project(self.client, spec, spec.get("label_config") or default_config(spec))
                project = existing
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
    def _deliver_captures(self, project: ResolvedProject, batch: list[Claimed]) -> None:
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

    # -- end-user feedback ------------------------------------------------------------------
    def _add_feedback(self, project: ResolvedProject, batch: list[Claimed]) -> None:
        """Add each feedback to its task: one read and one write per task, however many arrived.

        Idempotent (entries carry the feedback's id), so a retried write adds nothing twice.
        Feedback whose task is not in Label Studio yet waits, and after a while is dead-lettered.
        """
        by_task: dict[int, list[Claimed]] = {}
        waiting: list[Claimed] = []
        for c in batch:
            task_ids = self._feedback_tasks(project, c.record)
            if task_ids:
                for task_id in task_ids:
                    by_task.setdefault(task_id, []).append(c)
            else:
                waiting.append(c)
        for task_id, claimed in by_task.items():
            with self._one_write():  # read and write together: a session update must not slip in between
                task = self.client.get_task(task_id)
                if task is None:
                    continue
                data = add_feedback(dict(task.get("data") or {}), [_entry(c.record) for c in claimed])
                if data is not None:
                    if "priority" in data:  # negative feedback moves a task up the review queue
                        data["priority"] = priority(data)
                    self.client.update_task(task_id, data)
        delivered = [c.seq for c in batch if c not in waiting]
        self.outbox.done(delivered)
        self.metrics.add("delivered", len(delivered))
        self._feedback_later(waiting)

    def _feedback_later(self, waiting: list[Claimed]) -> None:
        """Feedback whose capture has no task (yet): tried again later, dead-lettered in the end."""
        for c in waiting:
            if c.attempts >= FEEDBACK_ATTEMPTS:
                self.outbox.dead_letter(c.seq, "no Label Studio task for the capture this feedback names")
                self.metrics.add("dead_lettered")
            else:
                self.outbox.retry_later([c.seq], backoff(c.attempts, base_s=2.0, cap_s=300.0))

    def _feedback_tasks(self, project: ResolvedProject, record: CaptureRecord) -> list[int]:
        """The task(s) feedback goes to: the session's task (chat), else the request's task."""
        target = record.target or {}
        ref = target_ref(target)
        if project.layout.mode == "chat" and ref is not None:
            mapping = self.outbox.session_task(record.project_key, ref)
            if mapping is not None:
                return [mapping.task_id]
            # Not delivered from this outbox: its task is found by the session's reference, never by
            # the user_id and session_id columns, which redaction can make alike for two users.
            tasks = self.client.list_tasks(project.id, 1, 100, where={"session_ref": ref})
            tasks = [t for t in tasks if (t.get("data") or {}).get("session_ref") == ref]
            return [max(t["id"] for t in tasks)] if tasks else []
        if not target.get("request_id"):
            return []
        tasks = self.client.list_tasks(project.id, 1, 100, where={"request_id": target["request_id"]})
        return [t["id"] for t in tasks if (t.get("data") or {}).get("request_id") == target["request_id"]]

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
        data = build_task(record, project.layout)["data"]
        self.trace_links.add(data)
        with self._one_write() as mark:
            task = self.client.get_task(mapping.task_id)
            if task is None or _is_annotated(task):
                return False
            data.update({k: task["data"][k] for k in FEEDBACK_KEYS if k in (task.get("data") or {})})
            data["priority"] = priority(data)
            mark()
            self.client.update_task(task["id"], data)
            if record.response is not None:
                pred = prediction(record, project.layout)
                existing = task.get("predictions") or []
                mark()
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
            with self._one_write():
                ids = self.client.import_tasks(project.id, [task for _, task in batch])
        except Rejected as exc:
            if exc.status == 404:  # the project, not a record: nothing to split
                raise
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
        if project.id not in self._tabbed:  # once per project and process: the annotators' review tab
            self._tabbed.add(project.id)
            try:
                with self._one_write():
                    ensure_review_tab(self.client, project.id)
            except LabelStudioError:
                pass  # a convenience: never a reason to hold captures back

    def _build(self, project: ResolvedProject, group: list[Claimed]) -> dict[str, Any] | None:
        """The group's task; a record that cannot be made into one is dead-lettered (not left blocking)."""
        try:
            task = build_task(_newest(group).record, project.layout)
            self.trace_links.add(task["data"])
            return task
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
