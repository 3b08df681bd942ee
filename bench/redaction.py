"""Redaction on crafted text: the rules before and after they were made linear, and what one
crafted request costs the other requests of the app.

    .venv/bin/python -m bench.redaction [--size 100000] [--no-stall]

1. Each rule's worst case, and a few mixed texts, ``--size`` characters long: the whole
   redactor (every rule) on it, before (the rules of commit 2604534) and after. A "before" run
   is skipped when the text at 20 KB already takes more than 1 s; its time at full size is
   then extrapolated from the times at 20 and 40 KB (marked ``*``).
2. The common case: ``Redactor().record(...)`` on typical small records, before and after.
3. The stall: the app served by uvicorn with the plugin (Label Studio unreachable, so every
   capture stays in the outbox) while a client pings a cheap route every 5 ms; one request
   carries a large prompt. Printed: the slowest ping from that request on, and the slowest
   once its answer has arrived (when the capture is redacted in the background).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import timeit
import types
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from bench.common import ROOT, free_port
from langchain_label_studio.record import CaptureRecord
from langchain_label_studio.redact import Redactor

BEFORE_COMMIT = "2604534"
#: Above this at 20 KB, a "before" run at full size would take too long: it is extrapolated.
BEFORE_CAP_S = 1.0


def fill(unit: str, prefix: str = "", suffix: str = "") -> Callable[[int], str]:
    """A text of ``size`` characters: ``unit`` repeated between ``prefix`` and ``suffix``."""
    return lambda size: prefix + unit * max(1, (size - len(prefix) - len(suffix)) // len(unit)) + suffix


def mixed(size: int) -> str:
    """Random pieces of every rule's worst cases and of real personal data, glued together."""
    rng = random.Random(2604534)
    pieces = [
        "a@",
        "a.",
        "@a.",
        "eyJ-",
        "sk-",
        "password=",
        '"token": "',
        "bearer ",
        "-----BEGIN RSA PRIVATE KEY-----\n",
        "DE89 ",
        "4111 ",
        "+1 ",
        "(555) ",
        "0049 ",
        "1 ",
        "2026-11-30T23:48:05+00:00 ",
        "alice.smith@example.com ",
        "+44 20 7946 0958 ",
        "4111 1111 1111 1111 ",
        "DE89 3704 0044 0532 0130 00 ",
        "aws secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY ",
    ]
    out: list[str] = []
    length = 0
    while length < size:
        out.append(rng.choice(pieces))
        length += len(out[-1])
    return "".join(out)[:size]


AWS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEa"
CHAT_LINE = (
    "2026-11-30T23:48:05+00:00 user 3f2a9c1e-7b4d-4e8a-9f1c-2d3e4f5a6b7c: mail alice.smith@example.com or call "
    "+44 20 7946 0958, card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, v1.23.2\n"
)

#: name -> text of a given size. The worst cases were found by building, for each rule, what
#: makes its pattern try hardest: long runs of what it scans, starts that fail late, floods
#: of candidates its Python check must reject.
CASES: dict[str, Callable[[int], str]] = {
    "email: a@ then a.a.a...": fill("a.", prefix="a@"),
    "email: a.a.a... then @": fill("a.", suffix="@"),
    "email: @a. repeated": fill("@a."),
    "email: a@a. repeated": fill("a@a."),
    "email: ü@ then ü.ü.ü...": fill("ü.", prefix="ü@"),
    "jwt: eyJ- repeated": fill("eyJ-"),
    "jwt: eyJ. repeated": fill("eyJ."),
    "jwt: two segments repeated": fill("eyJaaaaaaaaa.bbbbbbbbb "),
    "api key: sk repeated": fill("sk "),
    "api key: keys one char short": fill("sk-aaaaaaaaaaaaaa "),
    "named secret: password= repeated": fill("password="),
    "named secret: password: repeated": fill("password: "),
    "named secret: password then spaces": fill(" ", prefix="password", suffix="x"),
    "named secret: password: then spaces": fill(" ", prefix="password:", suffix="x"),
    'named secret: "token": " repeated': fill('"token": "'),
    "named secret: unclosed quote": fill("a", prefix='"password": "'),
    "bearer: repeated": fill("bearer "),
    "bearer: then spaces": fill(" ", prefix="Bearer"),
    "private key: BEGIN repeated": fill("-----BEGIN RSA PRIVATE KEY-----\n"),
    "private key: BEGIN, no END": fill("A", prefix="-----BEGIN PRIVATE KEY-----\n"),
    "private key: BEGIN, dashes": fill("A-", prefix="-----BEGIN PRIVATE KEY-----\n"),
    "aws secret: 40-char runs": fill(AWS_KEY + " ", prefix="aws secret "),
    "iban: DE89 repeated": fill("DE89 "),
    "iban: bad checksums": fill("DE89 3704 0044 0532 0130 01 "),
    "card: 1 repeated": fill("1 "),
    "card: 1- repeated": fill("1-"),
    "card: bad Luhn": fill("4111 1111 1111 1112 "),
    "card: digits": fill("1234567890"),
    "phone: +1 repeated": fill("+1 "),
    "phone: + then digits": fill("1", prefix=" +"),
    "phone: +30 digits repeated": fill(" +" + "1" * 30),
    "phone: +17 digits repeated": fill("+12345678901234567 "),
    "phone: (555) repeated": fill("(555) "),
    "phone: +1 (0) repeated": fill("+1 (0)"),
    "phone: 1 2 3 ...": fill("1 2 3 4 5 6 7 8 9 0 "),
    "phone: 0049 repeated": fill("0049 "),
    "timestamps": fill("2026-11-30T23:48:05.123456+00:00 "),
    "uuids (nil)": fill("00000000-0000-0000-0000-000000000000 "),
    "mixed: separators": fill("a@1.2-3 4:5=6_7/8+9(0) "),
    "mixed: chat log with personal data": fill(CHAT_LINE),
    "mixed: random pieces": mixed,
    "plain words": fill("hello world "),
}


def old_redact() -> types.ModuleType:
    """The redaction module as it was before (from git), importable without its package."""
    source = subprocess.run(
        ["git", "show", f"{BEFORE_COMMIT}:plugin/langchain_label_studio/redact.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    source = source.replace("from .record import", "from langchain_label_studio.record import")
    module = sys.modules.setdefault("redact_before", types.ModuleType("redact_before"))  # dataclasses look it up
    exec(compile(source, f"{BEFORE_COMMIT}:redact.py", "exec"), module.__dict__)
    return module


def seconds(redactor_class: type, text: str, repeat: int = 3) -> float:
    """Best of ``repeat`` runs of a fresh redactor over ``text``."""
    best = math.inf
    for _ in range(repeat):
        redactor = redactor_class()
        start = time.perf_counter()
        redactor.text(text)
        best = min(best, time.perf_counter() - start)
    return best


def seconds_before(old: type, make: Callable[[int], str], size: int) -> tuple[float, bool]:
    """The old redactor's time at ``size``, or its extrapolation (True) when that is too slow."""
    at_20k = seconds(old, make(20_000), repeat=1)
    if at_20k <= BEFORE_CAP_S:
        slow = at_20k * (size / 20_000) ** 2 > 1.0  # up to seconds: once is enough
        return seconds(old, make(size), repeat=1 if slow else 3), False
    at_40k = seconds(old, make(40_000), repeat=1)
    exponent = min(2.0, max(1.0, math.log2(at_40k / at_20k)))
    return at_40k * (size / 40_000) ** exponent, True


def compare(size: int) -> None:
    old = old_redact().Redactor
    print(f"Whole redactor (every rule) on {size // 1000} KB of each text, best of 3 (a run of seconds: 1) (ms)")
    print(f"{'text':38s} {'before':>12s} {'after':>9s} {'ratio':>9s}")
    worst, extrapolated = ("", 0.0), False
    for name, make in CASES.items():
        text = make(size)
        after = seconds(Redactor, text)
        before, guessed = seconds_before(old, make, size)
        extrapolated |= guessed
        shown = f"{before * 1000:,.0f}*" if guessed else f"{before * 1000:,.1f}"
        ratio = before / after
        print(f"{name:38s} {shown:>12s} {after * 1000:9.1f} {ratio:8.{0 if ratio >= 10 else 1}f}x")
        worst = max(worst, (name, after), key=lambda item: item[1])
    print(f"slowest after: {worst[1] * 1000:.1f} ms ({worst[0]})")
    if extrapolated:
        print(f"* extrapolated from 20 and 40 KB: at 20 KB the old rules already took more than {BEFORE_CAP_S} s")


def typical_records() -> dict[str, CaptureRecord]:
    plain = CaptureRecord(
        project={"title": "P", "id": None, "mode": "prompt", "label_config": None},
        prompt=[{"role": "user", "content": "Tell me about cats"}],
        response="Cats are small, carnivorous mammals.",
        data={"user_id": "bench", "request_id": uuid.uuid4().hex, "route": "/ask", "run_name": "RunnableSequence"},
    )
    chat = CaptureRecord(
        project={"title": "P", "id": None, "mode": "chat", "label_config": None},
        prompt=[
            {"role": "system", "content": "You are a helpful assistant. Answer in 3 sentences."},
            {"role": "user", "content": "What's the weather like in Paris on 2026-11-30? I land at 10:45."},
            {"role": "assistant", "content": "It should be around 8°C with light rain: bring an umbrella."},
            {"role": "user", "content": "And in Berlin?"},
        ],
        response="Berlin will be colder, about 3°C, cloudy, with wind from the north-east at 20 km/h.",
        data={
            "user_id": "user-1234",
            "session_id": "3f2a9c1e-7b4d-4e8a-9f1c-2d3e4f5a6b7c",
            "request_id": uuid.uuid4().hex,
            "route": "/chat",
            "model": "gpt-4o-mini",
            "metadata": {"ls_provider": "openai", "ls_temperature": 0.2, "tags": ["prod", "v1.23.2"]},
            "usage": {"input_tokens": 120, "output_tokens": 45},
            "started_at": "2026-11-30T23:48:05+00:00",
        },
    )
    with_email = copy.deepcopy(chat)
    with_email.prompt[1]["content"] += " Mail me at alice.smith@example.com"  # type: ignore[index]
    return {
        "no digit, mark or keyword": plain,
        "chat turn with digits and colons": chat,
        "the same with an e-mail": with_email,
    }


def microseconds_per_record(redactor_class: type, record: CaptureRecord) -> float:
    redactor = redactor_class()
    copying = min(timeit.repeat(lambda: copy.copy(record), number=2000, repeat=3)) / 2000
    runs = min(timeit.repeat(lambda: redactor.record(copy.copy(record)), number=2000, repeat=3)) / 2000
    return (runs - copying) * 1e6


def common_case(turns: int = 5) -> None:
    """Before and after measured in turns, so that other load on the machine hits both alike."""
    old = old_redact().Redactor
    print(f"\nCommon case: Redactor().record(...) on a typical small record (us, best of {turns} turns)")
    for name, record in typical_records().items():
        before = after = math.inf
        for _ in range(turns):
            before = min(before, microseconds_per_record(old, record))
            after = min(after, microseconds_per_record(Redactor, record))
        print(f"{name:34s} before {before:6.1f}  after {after:6.1f}  ratio {after / before:4.2f}")


# --- the stall -----------------------------------------------------------------------------


def stall_app() -> Any:
    """The app of the stall measurement (``uvicorn --factory``): ``/ping`` beside a captured route."""
    from fastapi import FastAPI
    from langserve import add_routes

    from bench.app import chain
    from langchain_label_studio import LabelStudioMiddleware, pipeline

    if os.environ.get("BENCH_REDACTOR") == "before":
        pipeline.Redactor = old_redact().Redactor  # type: ignore[attr-defined]
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> str:
        return "ok"

    add_routes(app, chain, path="/ask")
    app.add_middleware(LabelStudioMiddleware, routes={"/ask": "Bench"}, health=True)
    return app


class Server:
    """``stall_app`` served by uvicorn in a subprocess, Label Studio unreachable."""

    def __init__(self, redactor: str) -> None:
        self.state = tempfile.TemporaryDirectory(prefix="bench-redaction-")
        self.url = f"http://127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            "BENCH_REDACTOR": redactor,
            "LABEL_STUDIO_URL": "http://127.0.0.1:9",
            "LABEL_STUDIO_API_KEY": "unused",
            "LABEL_STUDIO_STATE_DIR": self.state.name,
        }
        cmd = [sys.executable, "-m", "uvicorn", "bench.redaction:stall_app", "--factory"]
        cmd += ["--port", self.url.rsplit(":", 1)[1], "--log-level", "warning", "--no-access-log"]
        self.log = open(os.path.join(self.state.name, "server.log"), "w+b")  # noqa: SIM115  (closed on exit)
        self.process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.post(f"{self.url}/ask/invoke", json={"input": {"topic": "warm-up"}}, timeout=5)
                return self
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.log.seek(0)
                    raise RuntimeError(f"the stall app did not start:\n{self.log.read().decode()}") from None
                time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(60)
        self.log.close()
        self.state.cleanup()

    def health(self) -> dict:
        return httpx.get(f"{self.url}/label-studio/health", timeout=60).json()


def slowest_pings(server: Server, prompt: str | None, after_s: float = 3.0) -> tuple[float, float]:
    """Slowest ping (ms) ending after the request was sent, and after its answer arrived."""
    pings: list[tuple[float, float]] = []  # (when it ended, how long it took)
    stop = threading.Event()

    def ping() -> None:
        with httpx.Client(timeout=300) as client:
            while not stop.is_set():
                start = time.perf_counter()
                client.get(f"{server.url}/ping")
                end = time.perf_counter()
                pings.append((end, end - start))
                time.sleep(max(0.0, 0.005 - (end - start)))

    pinger = threading.Thread(target=ping)
    pinger.start()
    time.sleep(0.5)
    sent = time.perf_counter()
    if prompt is not None:
        httpx.post(f"{server.url}/ask/invoke", json={"input": {"topic": prompt}}, timeout=300).raise_for_status()
    answered = time.perf_counter()
    time.sleep(after_s)
    stop.set()
    pinger.join()
    since_sent = max(took for end, took in pings if end >= sent)
    since_answered = max(took for end, took in pings if end >= answered)
    return since_sent * 1000, since_answered * 1000


def stall(size: int, rounds: int) -> None:
    worst_name = max(
        (name for name in CASES if name != "plain words"), key=lambda name: seconds(Redactor, CASES[name](size))
    )
    scenarios = [
        ("after", "no large request", None),
        ("after", f"{size // 1000} KB of plain words", CASES["plain words"](size)),
        ("after", f"{size // 1000} KB '{worst_name}'", CASES[worst_name](size)),
        ("after", f"{size // 1000} KB 'email: a@ then a.a.a...'", CASES["email: a@ then a.a.a..."](size)),
        ("before", "20 KB 'email: a@ then a.a.a...'", CASES["email: a@ then a.a.a..."](20_000)),
    ]
    print(f"\nStall: slowest /ping (every 5 ms) while one request is served and captured, {rounds} rounds (ms)")
    print(f"{'redactor':9s} {'request':44s} {'from sending':>14s} {'after answer':>14s}")
    for redactor, label, prompt in scenarios:
        with Server(redactor) as server:
            for _ in range(rounds):
                since_sent, since_answered = slowest_pings(server, prompt)
                print(f"{redactor:9s} {label:44s} {since_sent:14.1f} {since_answered:14.1f}")
            health = server.health()
        print(f"{'':9s} (captured {health.get('captured')}, redactions {health['redactions']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-stall", action="store_true")
    args = parser.parse_args()
    compare(args.size)
    common_case()
    if not args.no_stall:
        stall(args.size, args.rounds)


if __name__ == "__main__":
    main()
