"""What an annotator sees: a captured chat task opened in Label Studio in a real browser."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from conftest import ROOT, tasks_where, wait_delivered
from test_middleware import chat

ARTIFACTS = ROOT / "test-artifacts"


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Chromium is not installed (tests/run.sh installs Debian's chromium package)")
    return path


def test_chat_task_shows_dialogue_and_prefilled_answer(label_studio, admin, example_app):
    from playwright.sync_api import expect, sync_playwright

    session = f"s-{uuid.uuid4().hex[:8]}"
    for text in ["Hello there", "What is the weather in Oslo?"]:
        chat(example_app, "dana", session, text)
    wait_delivered(example_app)
    [task] = tasks_where(admin, "Support chats", session_id=session)

    ARTIFACTS.mkdir(exist_ok=True)
    shot = Path(ARTIFACTS / "annotator-chat-task.png")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium(),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{label_studio.url}/user/login/")
        page.fill("input[name=email]", label_studio.username)
        page.fill("input[name=password]", label_studio.password)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/user/login" not in url, timeout=60_000)
        page.goto(f"{label_studio.url}/projects/{task['project']}/data?task={task['id']}")
        for text in [
            "Hello there",
            "(turn 1) You said: Hello there",
            "What is the weather in Oslo?",
            "[get_weather] Sunny and 21°C in Oslo.",
        ]:
            expect(page.get_by_text(text, exact=False).first).to_be_visible(timeout=60_000)
        # The latest answer, pre-filled: an open textarea in this version's layout (tests/test_review.py checks
        # it), a line of text in projects an earlier version created (a kept test server's "Support chats").
        answer = "Here is what I found: Sunny and 21°C in Oslo."
        box = page.locator("[data-testid=textarea-region]").last
        expect(box).to_be_visible(timeout=30_000)
        editor = box.locator("textarea")
        assert (editor.input_value() if editor.count() else box.inner_text()).strip() == answer
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000
