"""What annotators get and what comes back: the review layout in a real browser, per-turn review,
side-by-side comparisons from a challenger, and the exports they make, against a real Label Studio.

Annotations posted through the API have the shape the editor produces; each shape was taken from
an annotation made in the browser (the per-turn rating and the Pairwise choice are made there again
here and checked).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from conftest import ROOT, serve, tasks_where, wait_delivered
from test_annotator_view import chromium
from test_export import lines

from langchain_label_studio.export import export

ARTIFACTS = ROOT / "test-artifacts"
VIEWPORT = {"width": 1366, "height": 768}
RUN = uuid.uuid4().hex[:6]
CHATS = f"Review chats {RUN}"
JOKES = f"Review jokes {RUN}"


@pytest.fixture(scope="module")
def review_app(label_studio, tmp_path_factory):
    """The example app with projects of its own and the challenger answering every request."""
    env = {"EXAMPLE_CHATS_PROJECT": CHATS, "EXAMPLE_JOKES_PROJECT": JOKES, "EXAMPLE_CHALLENGER_RATE": "1"}
    with serve("example_app.app:app", label_studio, tmp_path_factory.mktemp("review") / "state", **env) as client:
        yield client


def chat(app, user: str, session: str, text: str) -> None:
    body = {"input": {"messages": [{"type": "human", "content": text}]}}
    resp = app.post("/chat/invoke", json=body, headers={"X-User-ID": user, "X-Session-ID": session})
    assert resp.status_code == 200, resp.text


def settle(app, admin, title: str, count: int, **where) -> list[dict]:
    """Wait until ``count`` tasks of ``title`` match ``where`` (challenger tasks come after the response)."""
    deadline = time.monotonic() + 60
    while True:
        wait_delivered(app)
        tasks = tasks_where(admin, title, **where)
        if len(tasks) >= count or time.monotonic() > deadline:
            return tasks
        time.sleep(0.3)


def post_annotation(admin, task_id: int, result: list[dict]) -> int:
    resp = admin._call("POST", f"/api/tasks/{task_id}/annotations/", "annotating", json={"result": result})
    return resp.json()["id"]


def textarea(name: str, to: str, text: str) -> dict:
    return {"from_name": name, "to_name": to, "type": "textarea", "value": {"text": [text]}}


def rating(name: str, to: str, value: int) -> dict:
    return {"from_name": name, "to_name": to, "type": "rating", "value": {"rating": value}}


class Browser:
    """A logged-in headless Chromium page at 1366x768."""

    def __init__(self, label_studio) -> None:
        from playwright.sync_api import sync_playwright

        self.ls = label_studio
        self._pw = sync_playwright().start()
        self.browser = self._pw.chromium.launch(
            executable_path=chromium(), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        self.page = self.browser.new_page(viewport=VIEWPORT)
        self.page.goto(f"{label_studio.url}/user/login/")
        self.page.fill("input[name=email]", label_studio.username)
        self.page.fill("input[name=password]", label_studio.password)
        self.page.click("button[type=submit]")
        self.page.wait_for_url(lambda url: "/user/login" not in url, timeout=60_000)

    def open_task(self, project_id: int, task_id: int, text: str) -> None:
        from playwright.sync_api import expect

        self.page.goto(f"{self.ls.url}/projects/{project_id}/data?task={task_id}")
        expect(self.page.get_by_text(text, exact=False).first).to_be_visible(timeout=60_000)
        self.page.wait_for_timeout(800)

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path))
        return path

    def in_first_viewport(self, selector: str) -> bool:
        """Whether an element matching ``selector`` is wholly on screen as the page opened (no scrolling)."""
        boxes = [self.page.locator(selector).nth(i).bounding_box() for i in range(self.page.locator(selector).count())]
        return any(b is not None and b["y"] >= 0 and b["y"] + b["height"] <= VIEWPORT["height"] for b in boxes)

    def click_to_edit(self, selector: str, nth: int = -1) -> dict:
        """Click an answer box (the ``nth`` match of ``selector``) as an annotator does; what then has the
        keyboard, with its place on the screen and its visible height in lines of its own text."""
        self.page.locator(selector).nth(nth).click()
        self.page.wait_for_timeout(300)
        return self.page.evaluate(
            """() => {
                const el = document.activeElement, box = el.getBoundingClientRect(), css = getComputedStyle(el);
                const line = parseFloat(css.lineHeight) || 1.2 * parseFloat(css.fontSize);
                return {tag: el.tagName, name: el.getAttribute("name") || "", value: el.value ?? null,
                        top: box.top, bottom: box.bottom, lines: box.height / line};
            }"""
        )

    def on_screen(self, selector: str, nth: int) -> bool:
        """Whether the ``nth`` element matching ``selector`` is wholly on screen now."""
        box = self.page.locator(selector).nth(nth).bounding_box()
        return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= VIEWPORT["height"]

    def submit(self) -> None:
        self.page.get_by_role("button", name="Submit").first.click()
        self.page.wait_for_timeout(1500)

    def close(self) -> None:
        self.browser.close()
        self._pw.stop()


@pytest.fixture(scope="module")
def browser(label_studio):
    b = Browser(label_studio)
    yield b
    b.close()


def test_new_projects_have_instructions_and_a_review_tab(admin, review_app):
    resp = review_app.post("/joke/invoke", json={"input": {"topic": "owls"}}, headers={"X-User-ID": "rev"})
    assert resp.status_code == 200
    [task] = settle(review_app, admin, JOKES, 1, user_id="rev")
    project = admin.get_project(task["project"])
    assert project["description"].startswith("Answers of a LangChain app")
    assert "Rating" in project["expert_instruction"] and project["show_instruction"] is True
    assert (task["data"]["first_message"], task["data"]["turns"], task["data"]["priority"]) == (
        "Tell me a joke about owls",
        1,
        0,
    )
    views = admin._call("GET", "/api/dm/views/", "tabs", params={"project": project["id"]}).json()
    [tab] = [v for v in views if v["data"]["title"] == "Review queue"]
    assert tab["data"]["ordering"] == ["-tasks:data.priority"]
    assert tab["data"]["columnsDisplayType"]["tasks:data.feedback_score"] == "Number"
    assert tab["data"]["columnsDisplayType"]["tasks:data.captured_at"] == "Datetime"


def test_prompt_view_rating_in_first_viewport(label_studio, admin, review_app, browser):
    resp = review_app.post("/joke/invoke", json={"input": {"topic": "bees"}}, headers={"X-User-ID": "rev-view"})
    assert resp.status_code == 200
    [task] = settle(review_app, admin, JOKES, 1, user_id="rev-view")
    browser.open_task(task["project"], task["id"], "Tell me a joke about bees")
    page = browser.page
    assert page.get_by_text("Rate the answer", exact=True).first.is_visible()
    assert page.get_by_text("Answer: edit it to correct it", exact=True).first.is_visible()
    assert browser.in_first_viewport(".ant-rate, [class*='rating'] li, .lsf-rating")
    browser.shot("review-prompt.png")
    # Clicking the pre-filled answer puts the cursor in a textarea several lines high, the rating still on screen.
    answer = resp.json()["output"]
    editor = browser.click_to_edit(".lls-review [data-testid=textarea-region]")
    assert (editor["tag"], editor["value"]) == ("TEXTAREA", answer) and editor["name"].startswith("response:")
    assert editor["lines"] >= 6 and 0 <= editor["top"] and editor["bottom"] <= VIEWPORT["height"], editor
    assert browser.on_screen(".ant-rate", 0)
    # Enter starts a new line (it does not save or submit); the edit is what Submit sends.
    page.keyboard.press("Control+End")
    page.keyboard.press("Enter")
    page.keyboard.type("A second line.")
    browser.submit()
    [made] = admin._call("GET", f"/api/tasks/{task['id']}/annotations/", "annotations").json()
    [text] = [r["value"]["text"] for r in made["result"] if r["from_name"] == "response"]
    assert text == [f"{answer}\nA second line."]


def test_per_turn_chat_review_in_the_browser_and_export(label_studio, admin, review_app, browser, tmp_path):
    user, session = f"rev-{RUN}", f"per-turn-{RUN}"
    for text in ["Hello there", "What is the weather in Oslo?", "Thanks!"]:
        chat(review_app, user, session, text)
    [task] = settle(review_app, admin, CHATS, 1, session_id=session)
    data = task["data"]
    assert data["turns"] == 3 and data["first_message"] == "Hello there"
    assert data["last_answer"] == "(turn 3) You said: Thanks!"
    assert [t["heading"] for t in data["review_turns"]] == [
        "Turn 1 of 3: rate the answer, correct it if wrong",
        "Turn 2 of 3: rate the answer, correct it if wrong",
    ]
    assert data["latest_turn"] == [{"role": "user", "content": "Thanks!"}]

    browser.open_task(task["project"], task["id"], "Hello there")
    page = browser.page
    text = page.evaluate("document.body.innerText")
    assert "00:00:00" not in text
    for shown in ["(turn 1) You said: Hello there", "[get_weather] Sunny and 21°C in Oslo.", "Turn 3 of 3"]:
        assert shown in text
    stars = page.locator(".ant-rate")
    assert stars.count() == 3  # one rating per turn
    assert browser.in_first_viewport(".ant-rate")  # the editor opens scrolled to the pre-filled latest answer
    browser.shot("review-chat-per-turn.png")
    # The latest answer: a click puts the cursor in a textarea several lines high, its rating on screen.
    editor = browser.click_to_edit(".lls-review [data-testid=textarea-region]")  # the last: the latest turn's
    assert (editor["tag"], editor["value"]) == ("TEXTAREA", "(turn 3) You said: Thanks!"), editor
    assert editor["lines"] >= 6 and 0 <= editor["top"] and editor["bottom"] <= VIEWPORT["height"], editor
    assert browser.on_screen(".ant-rate", -1)
    page.mouse.wheel(0, -5000)
    page.wait_for_timeout(300)
    # One annotation made in the browser: 4 stars on the first turn, a two-line correction of it (added with
    # Shift+Enter, then open again for editing, as multi-line), then submit.
    stars.first.locator("li").nth(3).click()
    page.locator("textarea[name=correction_0]").click()
    page.keyboard.type("Hello! How can I help?")
    page.keyboard.press("Enter")
    page.keyboard.type("Ask me anything.")
    page.keyboard.press("Shift+Enter")
    page.wait_for_timeout(300)
    correction = browser.click_to_edit(".lls-review [data-testid=textarea-region]", 0)
    assert correction["tag"] == "TEXTAREA" and correction["name"].startswith("correction_0:"), correction
    assert correction["value"] == "Hello! How can I help?\nAsk me anything." and correction["lines"] >= 4, correction
    assert browser.on_screen(".ant-rate", 0)
    browser.submit()
    [made] = admin._call("GET", f"/api/tasks/{task['id']}/annotations/", "annotations").json()
    by_name = {r["from_name"]: r for r in made["result"]}
    assert {k: by_name["rating_0"][k] for k in ("from_name", "to_name", "type", "value")} == rating(
        "rating_0", "turn_0", 4
    )
    assert {k: by_name["correction_0"][k] for k in ("from_name", "to_name", "type", "value")} == textarea(
        "correction_0", "turn_0", "Hello! How can I help?\nAsk me anything."
    )
    assert by_name["response"]["value"]["text"] == ["(turn 3) You said: Thanks!"]  # the pre-filled answer, kept
    admin._call("DELETE", f"/api/annotations/{made['id']}/", "removing the browser's annotation")

    # The annotator's review, as the editor sends it: turn 1 approved, turn 2 corrected and rated low,
    # the latest answer corrected.
    better = "It is sunny and 21°C in Oslo right now."
    fixed = "You're welcome! Anything else?"
    annotation = post_annotation(
        admin,
        task["id"],
        [
            rating("rating_0", "turn_0", 5),
            rating("rating_1", "turn_1", 2),
            textarea("correction_1", "turn_1", better),
            textarea("response", "dialogue", fixed),
            rating("rating", "dialogue", 4),
        ],
    )
    weather = data["review_turns"][1]["messages"][:-1]
    turn1 = [
        {"role": "user", "content": "Hello there"},
        {"role": "assistant", "content": "(turn 1) You said: Hello there"},
    ]
    original2 = "Here is what I found: Sunny and 21°C in Oslo."
    turn2 = [*weather, {"role": "assistant", "content": original2}]
    trace = {
        "task_id": task["id"],
        "annotation_id": annotation,
        "capture_id": data["capture_id"],
        "session_id": session,
        "user_id": user,
        "route": "/chat",
    }
    prompt3 = [*turn1, *turn2, {"role": "user", "content": "Thanks!"}]
    expected = {
        "sft": [
            {"messages": turn1, "turn": 1, **trace},
            {"messages": [*turn1, *weather, {"role": "assistant", "content": better}], "turn": 2, **trace},
            {"messages": [*prompt3, {"role": "assistant", "content": fixed}], "turn": 3, **trace},
        ],
        "preference": [
            {
                "prompt": [*turn1, *weather],
                "chosen": [{"role": "assistant", "content": better}],
                "rejected": [{"role": "assistant", "content": original2}],
                "turn": 2,
                **trace,
            },
            {
                "prompt": prompt3,
                "chosen": [{"role": "assistant", "content": fixed}],
                "rejected": [{"role": "assistant", "content": "(turn 3) You said: Thanks!"}],
                "turn": 3,
                **trace,
            },
        ],
        "rating": [
            {
                "prompt": turn1[:1],
                "completion": turn1[1:],
                "rating": 5,
                "label": True,
                "user_feedback": None,
                "turn": 1,
                **trace,
            },
            {
                "prompt": [*turn1, *weather],
                "completion": [{"role": "assistant", "content": original2}],  # the answer rated 2
                "rating": 2,
                "label": False,
                "user_feedback": None,
                "turn": 2,
                **trace,
            },
            {
                "prompt": prompt3,
                "completion": [{"role": "assistant", "content": "(turn 3) You said: Thanks!"}],
                "rating": 4,
                "label": True,
                "user_feedback": None,
                "turn": 3,
                **trace,
            },
        ],
    }
    server = {"url": label_studio.url, "api_key": label_studio.api_key}
    for fmt, rows in expected.items():
        out = tmp_path / f"{fmt}.jsonl"
        assert export(CHATS, fmt, out, user=user, **server) == len(rows)
        assert lines(out) == rows, fmt


def test_challenger_pairwise_in_the_browser_and_export(label_studio, admin, review_app, browser, tmp_path):
    user = f"pair-{RUN}"
    for topic in ["penguins", "otters"]:
        resp = review_app.post("/joke/invoke", json={"input": {"topic": topic}}, headers={"X-User-ID": user})
        assert resp.status_code == 200
        # the response is the model's own: the challenger never changes it
        assert resp.json()["output"] == f"Why did the {topic} cross the road? To get to the other side!"
    pairs = settle(review_app, admin, JOKES + " (A/B)", 2, user_id=user)
    assert len(pairs) == 2
    by_topic = {t["data"]["prompt"].rsplit(" ", 1)[-1]: t for t in pairs}
    for topic, task in by_topic.items():
        data = task["data"]
        answers = {data["left_source"]: data["answer_left"], data["right_source"]: data["answer_right"]}
        assert answers == {
            "model": f"Why did the {topic} cross the road? To get to the other side!",
            "challenger": f"What do {topic} read at breakfast? The {topic} times.",
        }
        assert data["challenger"] == "deterministic-challenger" or data["challenger"]

    # One choice made in the browser: click answer A, submit.
    penguins = by_topic["penguins"]
    browser.open_task(penguins["project"], penguins["id"], "Which answer is better?")
    assert browser.in_first_viewport("text=Answer B")
    # .last: the editor's copy, not the Data Manager's cell beside it
    browser.page.get_by_text(penguins["data"]["answer_left"], exact=True).last.click()
    browser.shot("review-pairwise.png")
    browser.submit()
    [made] = admin._call("GET", f"/api/tasks/{penguins['id']}/annotations/", "annotations").json()
    [choice] = [r for r in made["result"] if r["type"] == "pairwise"]
    assert (choice["from_name"], choice["value"]) == ("comparison", {"selected": "left"})
    shape = {k: choice[k] for k in ("from_name", "to_name", "type")}

    otters = by_topic["otters"]
    post_annotation(admin, otters["id"], [{**shape, "value": {"selected": "right"}}])
    out = tmp_path / "pref.jsonl"
    assert (
        export(JOKES + " (A/B)", "preference", out, user=user, url=label_studio.url, api_key=label_studio.api_key) == 2
    )
    rows = {r["task_id"]: r for r in lines(out)}
    for task, side in ((penguins, "left"), (otters, "right")):
        other = "right" if side == "left" else "left"
        row = rows[task["id"]]
        assert row["chosen"] == [{"role": "assistant", "content": task["data"][f"answer_{side}"]}]
        assert row["rejected"] == [{"role": "assistant", "content": task["data"][f"answer_{other}"]}]
        assert (row["chosen_source"], row["rejected_source"]) == (
            task["data"][f"{side}_source"],
            task["data"][f"{other}_source"],
        )
        assert row["prompt"] == [{"role": "user", "content": task["data"]["prompt"]}]


def test_data_manager_columns_sort_as_numbers(label_studio, admin, review_app, browser):
    user = f"dm-{RUN}"
    sessions = {"short": 2, "long": 10}
    for name, count in sessions.items():
        for i in range(count):
            chat(review_app, user, f"{name}-{RUN}", f"message {i}")
    tasks = settle(review_app, admin, CHATS, 2, user_id=user)
    project_id = tasks[0]["project"]
    views = admin._call("GET", "/api/dm/views/", "tabs", params={"project": project_id}).json()
    [tab] = [v for v in views if v["data"]["title"] == "Review queue"]
    # As an annotator clicking the "turns" column header: sorted as numbers (10 before 2), not text.
    ordered = {**tab["data"], "ordering": ["-tasks:data.turns"]}
    admin._call("PATCH", f"/api/dm/views/{tab['id']}/", "sorting", json={"project": project_id, "data": ordered})
    query = {
        "filters": {
            "conjunction": "and",
            "items": [{"filter": "filter:tasks:data.user_id", "operator": "equal", "type": "String", "value": user}],
        }
    }
    params = {"project": project_id, "view": tab["id"], "page_size": 10, "query": json.dumps(query)}
    body = admin._call("GET", "/api/tasks/", "tasks of the tab", params=params).json()
    assert [t["data"]["turns"] for t in body["tasks"] if t["data"].get("user_id") == user] == [10, 2]

    browser.page.goto(f"{label_studio.url}/projects/{project_id}/data?tab={tab['id']}")
    browser.page.get_by_text("first_message", exact=False).first.wait_for(timeout=60_000)
    browser.page.wait_for_timeout(1000)
    text = browser.page.evaluate("document.body.innerText")
    assert "message 0" in text and '"role"' not in text  # previews shown, raw JSON hidden
    browser.shot("review-data-manager.png")
    admin._call("PATCH", f"/api/dm/views/{tab['id']}/", "sorting", json={"project": project_id, "data": tab["data"]})
