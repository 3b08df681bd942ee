"""The Label Studio REST client: the only module that speaks Label Studio's API.

Both token kinds work: a Personal Access Token (a JWT refresh token, the default on new
servers) is exchanged for short-lived access tokens, refreshed before they expire; a
legacy token is sent as ``Authorization: Token ...``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

import httpx

from .record import dumps
from .urls import public_url


class LabelStudioError(Exception):
    """Label Studio answered with an error, or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthError(LabelStudioError):
    """The token was refused (401/403): nothing will work until it is fixed."""


class Rejected(LabelStudioError):
    """Label Studio refused the request for good (4xx): retrying it unchanged won't help."""


class Unavailable(LabelStudioError):
    """Label Studio is down, slow or failing (connection error, timeout, 5xx, 429).

    ``maybe_applied`` is True when the request may have been carried out before the
    failure (a timeout or reset after sending, a 5xx), so a retry must check first.
    """

    def __init__(self, message: str, status: int | None = None, maybe_applied: bool = False) -> None:
        super().__init__(message, status)
        self.maybe_applied = maybe_applied


def _detail(resp: httpx.Response) -> str:
    """The useful part of a Label Studio error answer (its validation errors or detail)."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300].replace("\n", " ")
    if isinstance(body, dict):
        body = body.get("validation_errors") or body.get("detail") or body
    return json.dumps(body, ensure_ascii=False)[:300]


def is_personal_access_token(token: str) -> bool:
    """True for a Personal Access Token (a JWT), False for a legacy token."""
    return token.count(".") == 2 and token.startswith("eyJ")


def _jwt_expiry(token: str) -> float:
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        return float(json.loads(base64.urlsafe_b64decode(payload))["exp"])
    except Exception:
        return time.time() + 60.0


class LabelStudioClient:
    """A small synchronous client for the calls capture delivery needs."""

    def __init__(
        self, url: str, api_key: str | None, timeout: float = 30.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        """``transport`` replaces the network (tests use ``httpx.MockTransport``)."""
        self.url = url.rstrip("/")
        #: The URL as messages show it (without credentials).
        self._shown = public_url(self.url)
        #: Seconds a request may take before it is given up (Label Studio may still carry it out).
        self.timeout = timeout
        self._api_key = api_key
        self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport)
        self._access: str | None = None
        self._access_expiry = 0.0
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def set_api_key(self, api_key: str) -> None:
        """Use another token from the next request on."""
        with self._lock:
            self._api_key, self._access = api_key, None

    # -- auth -------------------------------------------------------------------------
    def _auth_header(self) -> dict[str, str]:
        if not self._api_key:
            raise AuthError("no Label Studio API key: set LABEL_STUDIO_API_KEY or pass api_key")
        if not is_personal_access_token(self._api_key):
            return {"Authorization": f"Token {self._api_key}"}
        with self._lock:
            if self._access is None or time.time() > self._access_expiry - 30:
                self._refresh()
            return {"Authorization": f"Bearer {self._access}"}

    def _refresh(self) -> None:
        resp = self._send("POST", "/api/token/refresh/", json={"refresh": self._api_key}, auth=False)
        if resp.status_code in (400, 401, 403):
            raise AuthError(
                f"Label Studio refused the Personal Access Token ({resp.status_code}): "
                "create a new one under Account & Settings",
                resp.status_code,
            )
        self._check(resp, "refreshing the access token")
        self._access = resp.json()["access"]
        self._access_expiry = _jwt_expiry(self._access)

    # -- transport --------------------------------------------------------------------
    def _send(self, method: str, path: str, auth: bool = True, **kwargs: Any) -> httpx.Response:
        headers = {**(self._auth_header() if auth else {}), **kwargs.pop("headers", {})}
        try:
            return self._http.request(method, path, headers=headers, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise Unavailable(f"cannot reach Label Studio at {self._shown}: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            raise Unavailable(
                f"Label Studio at {self._shown} did not answer: {type(exc).__name__}", maybe_applied=method != "GET"
            ) from None

    def _check(self, resp: httpx.Response, doing: str) -> httpx.Response:
        code = resp.status_code
        if code < 400:
            return resp
        detail = _detail(resp)
        if code in (401, 403):
            raise AuthError(
                f"Label Studio refused the API key while {doing} ({code}): check LABEL_STUDIO_API_KEY", code
            )
        if code == 429 or code >= 500:
            raise Unavailable(f"Label Studio failed while {doing} ({code}): {detail}", code, maybe_applied=code >= 500)
        raise Rejected(f"Label Studio rejected {doing} ({code}): {detail}", code)

    def _call(self, method: str, path: str, doing: str, **kwargs: Any) -> httpx.Response:
        resp = self._send(method, path, **kwargs)
        if resp.status_code == 401 and self._api_key and is_personal_access_token(self._api_key):
            with self._lock:
                self._access = None
            resp = self._send(method, path, **kwargs)
        return self._check(resp, doing)

    # -- API ----------------------------------------------------------------------------
    def health(self) -> bool:
        """True when the server answers ``/health``."""
        try:
            return self._send("GET", "/health", auth=False).status_code == 200
        except Unavailable:
            return False

    def whoami(self) -> dict[str, Any]:
        return _object(self._call("GET", "/api/current-user/whoami", "checking the token"))

    def get_project(self, project_id: int) -> dict[str, Any]:
        return _object(self._call("GET", f"/api/projects/{project_id}", f"reading project {project_id}"))

    def find_project(self, title: str) -> dict[str, Any] | None:
        """The project with exactly this title (the oldest if several), or None."""
        page, found = 1, []
        while True:
            body = self._call(
                "GET",
                "/api/projects/",
                "listing projects",
                params={"page": page, "page_size": 100, "title": title, "include": "id,title,label_config"},
            ).json()
            results = body.get("results", body) if isinstance(body, dict) else body
            found += [p for p in results if p.get("title") == title]
            if not isinstance(body, dict) or not body.get("next"):
                break
            page += 1
        return min(found, key=lambda p: p["id"]) if found else None

    def create_project(self, title: str, label_config: str, **fields: Any) -> dict[str, Any]:
        """Create a project; ``fields`` are other project fields (``description``, ``expert_instruction``...)."""
        body = {**fields, "title": title, "label_config": label_config}
        return _object(self._call("POST", "/api/projects/", f"creating project {title!r}", json=body))

    def views(self, project_id: int) -> list[dict[str, Any]]:
        """The project's Data Manager tabs."""
        body = self._call("GET", "/api/dm/views/", "listing Data Manager tabs", params={"project": project_id}).json()
        return [v for v in body if isinstance(v, dict)] if isinstance(body, list) else []

    def create_view(self, view: dict[str, Any]) -> dict[str, Any]:
        """Add a Data Manager tab (``{"project": id, "data": {...}}``)."""
        return _object(self._call("POST", "/api/dm/views/", "adding a Data Manager tab", json=view))

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> list[int]:
        """Bulk-import tasks (with their predictions); returns the new task ids in order."""
        body = self._call(
            "POST",
            f"/api/projects/{project_id}/import",
            f"importing {len(tasks)} task(s)",
            params={"return_task_ids": "true"},
            content=dumps(tasks).encode(),
            headers={"Content-Type": "application/json"},
        ).json()
        return list(body.get("task_ids") or [])

    def get_task(self, task_id: int) -> dict[str, Any] | None:
        """The task, or None when it no longer exists."""
        resp = self._send("GET", f"/api/tasks/{task_id}")
        if resp.status_code == 404:
            return None
        return _object(self._check(resp, f"reading task {task_id}"))

    def update_task(self, task_id: int, data: dict[str, Any]) -> None:
        """Replace the task's ``data`` (Label Studio replaces it as a whole)."""
        self._call("PATCH", f"/api/tasks/{task_id}", f"updating task {task_id}", json={"data": data})

    def create_prediction(self, task_id: int, prediction: dict[str, Any]) -> int:
        body = self._call(
            "POST", "/api/predictions/", f"adding a prediction to task {task_id}", json={"task": task_id, **prediction}
        ).json()
        return int(body["id"])

    def update_prediction(self, prediction_id: int, prediction: dict[str, Any]) -> None:
        self._call(
            "PATCH", f"/api/predictions/{prediction_id}", f"updating prediction {prediction_id}", json=prediction
        )

    def tasks_by_data(self, project_id: int, key: str, values: list[str]) -> dict[str, int]:
        """Map each value of ``data.<key>`` found in the project to its task id."""
        found: dict[str, int] = {}
        for start in range(0, len(values), 50):
            chunk = values[start : start + 50]
            query = {
                "filters": {
                    "conjunction": "or",
                    "items": [
                        {"filter": f"filter:tasks:data.{key}", "operator": "equal", "type": "String", "value": v}
                        for v in chunk
                    ],
                }
            }
            page = 1
            while True:
                body = self._call(
                    "GET",
                    "/api/tasks/",
                    "looking up tasks",
                    params={
                        "project": project_id,
                        "query": json.dumps(query),
                        "page": page,
                        "page_size": 100,
                        "fields": "all",
                    },
                ).json()
                tasks = body.get("tasks", [])
                for t in tasks:
                    value = (t.get("data") or {}).get(key)
                    if value in chunk:
                        found.setdefault(value, t["id"])
                if len(tasks) < 100:
                    break
                page += 1
        return found

    def list_tasks(
        self, project_id: int, page: int, page_size: int = 100, where: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """One page of the project's tasks with annotations and predictions.

        ``where`` keeps tasks whose ``data.<key>`` equals each given value (filtered by Label Studio).
        """
        params: dict[str, Any] = {"project": project_id, "page": page, "page_size": page_size, "fields": "all"}
        if where:
            items = [
                {"filter": f"filter:tasks:data.{k}", "operator": "equal", "type": "String", "value": v}
                for k, v in where.items()
            ]
            params["query"] = json.dumps({"filters": {"conjunction": "and", "items": items}})
        resp = self._send("GET", "/api/tasks/", params=params)
        if resp.status_code == 404:
            return []
        return _tasks(self._check(resp, f"listing tasks of project {project_id}"))

    def tasks_after(
        self,
        project_id: int,
        after_id: int = 0,
        page_size: int = 100,
        where: dict[str, Any] | None = None,
        annotated: bool = False,
    ) -> list[dict[str, Any]]:
        """Up to ``page_size`` tasks with an id above ``after_id``, in id order, with annotations and predictions.

        Paging by the last id seen, tasks added or annotated meanwhile cannot shift the pages.
        ``where`` keeps tasks whose ``data.<key>`` equals each given value; ``annotated`` keeps
        tasks with at least one submitted (not skipped) annotation. Both are filtered by Label Studio.
        """
        items: list[dict[str, Any]] = [
            {"filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": after_id}
        ]
        items += [
            {"filter": f"filter:tasks:data.{k}", "operator": "equal", "type": "String", "value": v}
            for k, v in (where or {}).items()
        ]
        if annotated:
            items.append(
                {"filter": "filter:tasks:total_annotations", "operator": "greater", "type": "Number", "value": 0}
            )
        query = {"filters": {"conjunction": "and", "items": items}, "ordering": ["tasks:id"]}
        params = {"project": project_id, "page": 1, "page_size": page_size, "fields": "all", "query": json.dumps(query)}
        try:
            resp = self._call("GET", "/api/tasks/", f"listing tasks of project {project_id}", params=params)
        except Rejected as exc:
            if exc.status == 404:
                return []
            raise
        return _tasks(resp)

    def delete_project(self, project_id: int) -> None:
        self._call("DELETE", f"/api/projects/{project_id}", f"deleting project {project_id}")


def _object(resp: httpx.Response) -> dict[str, Any]:
    """The JSON object of an answer (Label Studio answers these calls with one)."""
    body = resp.json()
    if not isinstance(body, dict):
        raise Unavailable(f"Label Studio answered {resp.request.url.path} with no JSON object")
    return body


def _tasks(resp: httpx.Response) -> list[dict[str, Any]]:
    body = resp.json()
    tasks = body.get("tasks", []) if isinstance(body, dict) else []
    return [t for t in tasks if isinstance(t, dict)]
