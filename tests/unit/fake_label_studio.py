"""A fake Label Studio at the HTTP layer (``httpx.MockTransport``), for the unit tier.

It keeps projects, tasks, predictions and annotations in memory and answers the calls the
plugin makes with bodies built from answers RECORDED from a real server
(``tests/fixtures/label_studio/*.json``, made by ``tests/fixtures/record_label_studio.py``; the
version is in ``_meta.json``): the recorded body is the template, with ids, titles and data put
in. Validation and errors follow what was recorded: an import whose task lacks a data key of the
label config is refused whole (400, one error per item), a missing project or task is a 404, a
bad token a 401. Faults (5xx, 429, timeouts before or after the server applied the request) are
injected with :meth:`FakeLabelStudio.fail`.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx

from langchain_label_studio.client import LabelStudioClient

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "label_studio"
URL = "http://label-studio.test"
LEGACY_TOKEN = "legacy-0123456789abcdef"


def recorded(name: str) -> dict[str, Any]:
    """One recorded call: ``request``, ``status`` and ``body`` (or ``text``)."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


def _jwt(payload: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"eyJ{part({'alg': 'HS256'})[3:]}.{part(payload)}.c2lnbmF0dXJl"


#: A Personal Access Token as Label Studio makes them (a JWT refresh token).
PAT = _jwt({"token_type": "refresh", "exp": 4_000_000_000, "jti": "fixture"})


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int | None = None
    error: type[Exception] | None = None
    applied: bool = False  #: the server carries the request out, then the answer is lost
    times: int = 1


@dataclass
class FakeLabelStudio:
    """The server's state, and the transport that serves it."""

    projects: dict[int, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[int, dict[str, Any]] = field(default_factory=dict)
    predictions: dict[int, dict[str, Any]] = field(default_factory=dict)
    views: dict[int, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    access_tokens: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._ids = itertools.count(101)
        self.version = json.loads((FIXTURES / "_meta.json").read_text())["label_studio_version"]

    # -- test helpers ------------------------------------------------------------------------------
    def client(self, api_key: str = LEGACY_TOKEN, timeout: float = 0.2) -> LabelStudioClient:
        """The plugin's client, talking to this fake."""
        return LabelStudioClient(URL, api_key, timeout=timeout, transport=httpx.MockTransport(self.handle))

    def fail(
        self,
        method: str,
        path: str,
        *,
        status: int | None = None,
        error: type[Exception] | None = None,
        applied: bool = False,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` or raise ``error``."""
        self.faults.append(Fault(method, re.compile(path), status, error, applied, times))

    def add_project(self, title: str, label_config: str) -> int:
        pid = next(self._ids)
        self.projects[pid] = {"id": pid, "title": title, "label_config": label_config}
        return pid

    def annotate(self, task_id: int) -> None:
        self.tasks[task_id]["annotations"].append({"id": next(self._ids), "result": []})

    def project_tasks(self, pid: int) -> list[dict[str, Any]]:
        return [t for t in self.tasks.values() if t["project"] == pid]

    def count(self, method: str, pattern: str) -> int:
        return sum(1 for m, p in self.calls if m == method and re.fullmatch(pattern, p))

    # -- the transport --------------------------------------------------------------------------------
    def handle(self, request: httpx.Request) -> httpx.Response:
        method, path = request.method, request.url.path
        self.calls.append((method, path))
        fault = self._fault(method, path)
        if fault is not None and not fault.applied:
            return self._fault_answer(fault, request)
        answer = self._serve(request, method, path)
        if fault is not None:  # carried out, but the client never hears of it
            return self._fault_answer(fault, request)
        return answer

    def _fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.method == method and fault.path.fullmatch(path) and fault.times > 0:
                fault.times -= 1
                return fault
        return None

    def _fault_answer(self, fault: Fault, request: httpx.Request) -> httpx.Response:
        if fault.error is not None:
            raise fault.error("injected", request=request)
        return httpx.Response(fault.status or 500, json={"status_code": fault.status, "detail": "injected"})

    def _serve(self, request: httpx.Request, method: str, path: str) -> httpx.Response:
        if path == "/api/token/refresh/":
            return self._refresh(json.loads(request.content))
        if not self._authorized(request.headers.get("authorization", "")):
            return self._recorded("unauthorized")
        params = {k: v[-1] for k, v in parse_qs(request.url.query.decode()).items()}
        body = json.loads(request.content) if request.content else None
        for pattern, name in _ROUTES:
            match = re.fullmatch(pattern, f"{method} {path}")
            if match:
                return getattr(self, name)(*map(int, match.groups()), params=params, body=body)
        return httpx.Response(404, json={"detail": f"the fake has no {method} {path}"})

    def _authorized(self, header: str) -> bool:
        return header == f"Token {LEGACY_TOKEN}" or header.removeprefix("Bearer ") in self.access_tokens

    def _refresh(self, body: dict[str, Any]) -> httpx.Response:
        if body.get("refresh") != PAT:
            return self._recorded("token_refresh_refused")
        access = _jwt({"token_type": "access", "exp": int(time.time()) + 300, "jti": uuid.uuid4().hex})
        self.access_tokens.add(access)
        return httpx.Response(200, json={**recorded("token_refresh")["body"], "access": access})

    def expire_access_tokens(self) -> None:
        """Access tokens stop working (as when they expire early): the client must refresh."""
        self.access_tokens.clear()

    # -- answers -------------------------------------------------------------------------------------------
    def _recorded(self, name: str, status: int | None = None, **changes: Any) -> httpx.Response:
        call = recorded(name)
        if "text" in call:
            return httpx.Response(call["status"], text=call["text"], headers={"content-type": call["content_type"]})
        body = copy.deepcopy(call["body"])
        if isinstance(body, dict):
            body.update(changes)
            if "id" in body and "status_code" in body:
                body["id"] = str(uuid.uuid4())  # an error's own id
        return httpx.Response(status or call["status"], json=body)

    def list_projects(self, *, params: dict[str, str], body: Any) -> httpx.Response:
        title = params.get("title", "")
        include = (params.get("include") or "id,title,label_config").split(",")
        found = [p for p in self.projects.values() if title.lower() in p["title"].lower()]
        found.sort(key=lambda p: -p["id"])  # newest first, as Label Studio lists them
        page, size = int(params.get("page", 1)), int(params.get("page_size", 30))
        chunk = found[(page - 1) * size : page * size]
        results = [{k: p.get(k) for k in include} for p in chunk]
        more = page * size < len(found)
        return self._recorded(
            "projects_list",
            count=len(found),
            results=results,
            next=f"{URL}/api/projects/?page={page + 1}" if more else None,
        )

    def create_project(self, *, params: dict[str, str], body: dict[str, Any]) -> httpx.Response:
        pid = self.add_project(body["title"], body["label_config"])
        return self._project("project_create", pid)

    def get_project(self, pid: int, *, params: dict[str, str], body: Any) -> httpx.Response:
        return self._project("project_get", pid)

    def delete_project(self, pid: int, *, params: dict[str, str], body: Any) -> httpx.Response:
        if self.projects.pop(pid, None) is None:
            return self._recorded("project_missing")
        for task_id in [t["id"] for t in self.project_tasks(pid)]:
            del self.tasks[task_id]
        return httpx.Response(204)

    def _project(self, name: str, pid: int) -> httpx.Response:
        project = self.projects.get(pid)
        if project is None:
            return self._recorded("project_missing")
        return self._recorded(name, **project)

    def import_tasks(self, pid: int, *, params: dict[str, str], body: list[dict[str, Any]]) -> httpx.Response:
        project = self.projects.get(pid)
        if project is None:
            return self._recorded("import_missing_project")
        keys = re.findall(r'value="\$(\w+)"', project["label_config"])
        errors = [_task_error(i, task, keys) for i, task in enumerate(body)]
        if any(errors):  # Label Studio refuses the whole request, naming each bad item
            validation = {"non_field_errors": [e or {} for e in errors]}
            return self._recorded("import_rejected", validation_errors=validation)
        ids = [self._add_task(pid, task) for task in body]
        predictions = sum(len(t.get("predictions") or []) for t in body)
        return self._recorded("import", task_count=len(ids), prediction_count=predictions, task_ids=ids)

    def _add_task(self, pid: int, task: dict[str, Any]) -> int:
        task_id = next(self._ids)
        self.tasks[task_id] = {
            "id": task_id,
            "project": pid,
            "data": task["data"],
            "annotations": [],
            "predictions": [],
        }
        for pred in task.get("predictions") or []:
            self._add_prediction(task_id, pred)
        return task_id

    def _add_prediction(self, task_id: int, pred: dict[str, Any]) -> int:
        pred_id = next(self._ids)
        self.predictions[pred_id] = {**pred, "id": pred_id, "task": task_id}
        self.tasks[task_id]["predictions"].append(pred_id)
        return pred_id

    def list_tasks(self, *, params: dict[str, str], body: Any) -> httpx.Response:
        pid = int(params["project"])
        if pid not in self.projects:
            return self._recorded("tasks_list_missing_project")
        query = json.loads(params.get("query") or "{}")
        tasks = [t for t in self.project_tasks(pid) if _matches(t, query.get("filters"))]
        tasks.sort(key=lambda t: t["id"])
        page, size = int(params.get("page", 1)), int(params.get("page_size", 100))
        if page > 1 and (page - 1) * size >= len(tasks):
            return self._recorded("tasks_list_past_the_end")
        chunk = [self._task_view("tasks_list", t) for t in tasks[(page - 1) * size : page * size]]
        return self._recorded(
            "tasks_list",
            tasks=chunk,
            total=len(tasks),
            total_annotations=sum(len(t["annotations"]) for t in tasks),
            total_predictions=sum(len(t["predictions"]) for t in tasks),
        )

    def get_task(self, task_id: int, *, params: dict[str, str], body: Any) -> httpx.Response:
        task = self.tasks.get(task_id)
        if task is None:
            return self._recorded("task_missing")
        return httpx.Response(200, json=self._task_view("task_get", task))

    def patch_task(self, task_id: int, *, params: dict[str, str], body: dict[str, Any]) -> httpx.Response:
        task = self.tasks.get(task_id)
        if task is None:
            return self._recorded("task_missing")
        task["data"] = body["data"]  # Label Studio replaces data as a whole
        return httpx.Response(200, json=self._task_view("task_patch", task))

    def create_prediction(self, *, params: dict[str, str], body: dict[str, Any]) -> httpx.Response:
        task_id = int(body.pop("task"))
        if task_id not in self.tasks:
            return httpx.Response(400, json={"validation_errors": {"task": ["Invalid pk - object does not exist."]}})
        pred_id = self._add_prediction(task_id, body)
        return self._recorded("prediction_create", **self._prediction_fields(pred_id))

    def patch_prediction(self, pred_id: int, *, params: dict[str, str], body: dict[str, Any]) -> httpx.Response:
        self.predictions[pred_id].update(body)
        return self._recorded("prediction_patch", **self._prediction_fields(pred_id))

    def list_views(self, *, params: dict[str, str], body: Any) -> httpx.Response:
        pid = int(params.get("project", 0))
        return httpx.Response(200, json=[v for v in self.views.values() if v["project"] == pid])

    def create_view(self, *, params: dict[str, str], body: dict[str, Any]) -> httpx.Response:
        view_id = next(self._ids)
        self.views[view_id] = {"id": view_id, "data": body.get("data") or {}, "project": int(body["project"])}
        return self._recorded("view_create", **self.views[view_id])

    def _prediction_fields(self, pred_id: int) -> dict[str, Any]:
        pred = self.predictions[pred_id]
        return {
            "id": pred_id,
            "task": pred["task"],
            "result": pred.get("result"),
            "model_version": pred.get("model_version"),
            "project": self.tasks[pred["task"]]["project"],
        }

    def _task_view(self, name: str, task: dict[str, Any]) -> dict[str, Any]:
        """A task as the recorded answer ``name`` shows one (a list item, or a single task)."""
        body = recorded(name)["body"]
        template = body["tasks"][0] if "tasks" in body else body
        pred_template = template["predictions"][0]
        view = copy.deepcopy(template)
        view.update(
            id=task["id"],
            project=task["project"],
            data=task["data"],
            predictions=[{**copy.deepcopy(pred_template), **self._prediction_fields(p)} for p in task["predictions"]],
            annotations=copy.deepcopy(task["annotations"]),
            total_annotations=len(task["annotations"]),
            cancelled_annotations=0,
            total_predictions=len(task["predictions"]),
            is_labeled=bool(task["annotations"]),
        )
        return view


_ROUTES = [
    (r"GET /api/projects/", "list_projects"),
    (r"POST /api/projects/", "create_project"),
    (r"GET /api/projects/(\d+)/?", "get_project"),
    (r"DELETE /api/projects/(\d+)/?", "delete_project"),
    (r"POST /api/projects/(\d+)/import", "import_tasks"),
    (r"GET /api/tasks/", "list_tasks"),
    (r"GET /api/tasks/(\d+)/?", "get_task"),
    (r"PATCH /api/tasks/(\d+)/?", "patch_task"),
    (r"POST /api/predictions/", "create_prediction"),
    (r"PATCH /api/predictions/(\d+)/?", "patch_prediction"),
    (r"GET /api/dm/views/", "list_views"),
    (r"POST /api/dm/views/", "create_view"),
]


def _task_error(index: int, task: Any, keys: list[str]) -> str | None:
    """Label Studio's error for one imported item (as recorded), or None when it is fine."""
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        return f"Error at item {index}: Task[data] must be dict or list :: {task!r}"
    for key in keys:
        if key not in task["data"]:
            return (
                f'Error at item {index}: "{key}" key is expected in task data '
                f'[assume: item["data"] = task root with values] :: {task!r}'
            )
    return None


def _matches(task: dict[str, Any], filters: dict[str, Any] | None) -> bool:
    """Whether a task passes Data Manager filters (the kinds the plugin sends)."""
    if not filters or not filters.get("items"):
        return True
    results = []
    for item in filters["items"]:
        name = item["filter"].removeprefix("filter:tasks:")
        if name.startswith("data."):
            value = task["data"].get(name[5:])
        elif name == "total_annotations":
            value = len(task["annotations"])
        else:
            value = task[name]
        if item["operator"] == "equal":
            results.append(value == item["value"])
        elif item["operator"] == "greater":
            results.append(value is not None and value > item["value"])
        else:
            raise AssertionError(f"the fake does not know the operator {item['operator']!r}")
    return all(results) if filters.get("conjunction") == "and" else any(results)
