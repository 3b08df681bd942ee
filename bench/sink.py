"""A local stand-in for the tracing services the plugin is compared with: answers 200 at once to
every request and counts them.

    .venv/bin/python -m bench.sink --port 8899

Answers what each client accepts: LangSmith's ``GET /info`` (multipart ingest with zstd, as the
service announces them), ``/runs/multipart`` and ``/runs/batch``; Langfuse's OTLP traces
(``/api/public/otel/v1/traces``, an empty protobuf response) and ``/api/public/ingestion``; ``{}``
for anything else. ``GET /sink/counts`` (itself not counted) gives the requests and bytes received
so far by path. :class:`Sink` runs it in its own process pinned to core 1, as the load generator is.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from bench.common import ROOT

COUNTS = "/sink/counts"
LANGSMITH_INFO = {
    "version": "0.12.0",
    "instance_flags": {"zstd_compression_enabled": True},
    "batch_ingest_config": {
        "use_multipart_endpoint": True,
        "scale_up_qsize_trigger": 1000,
        "scale_up_nthreads_limit": 16,
        "scale_down_nempty_trigger": 4,
        "size_limit": 100,
        "size_limit_bytes": 20_971_520,
    },
}


class Handler(BaseHTTPRequestHandler):
    """Reads the whole request (sized or chunked), counts it, answers 200."""

    protocol_version = "HTTP/1.1"
    requests: Counter[str] = Counter()
    received: Counter[str] = Counter()
    lock = threading.Lock()

    def _body(self) -> int:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            size = 0
            while chunk := int(self.rfile.readline().split(b";")[0], 16):
                size += len(self.rfile.read(chunk))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return size
        return len(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def _answer(self) -> None:
        path = self.path.split("?", 1)[0]
        size = self._body()
        content_type = "application/json"
        if path == COUNTS:
            with self.lock:
                body = json.dumps({p: [n, self.received[p]] for p, n in self.requests.items()}).encode()
        else:
            with self.lock:
                self.requests[path] += 1
                self.received[path] += size
            if path.endswith("/info"):
                body = json.dumps(LANGSMITH_INFO).encode()
            elif "/otel/" in path:  # an empty ExportTraceServiceResponse
                body, content_type = b"", "application/x-protobuf"
            elif path.endswith("/ingestion"):
                body = b'{"successes": [], "errors": []}'
            else:
                body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


class Sink:
    """``bench.sink`` in a process of its own, its command after ``prefix`` (e.g. ``pinned(1)``)."""

    def __init__(self, port: int, prefix: list[str] | None = None) -> None:
        self.url = f"http://127.0.0.1:{port}"
        cmd = [*(prefix or []), sys.executable, "-m", "bench.sink", "--port", str(port)]
        self.process = subprocess.Popen(cmd, cwd=ROOT)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.counts()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and self.process.poll() is None, "the sink did not start"
                time.sleep(0.1)

    def counts(self) -> dict[str, tuple[int, int]]:
        """Requests and bytes received so far, by path."""
        return {path: (n, size) for path, (n, size) in httpx.get(self.url + COUNTS, timeout=10).json().items()}

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8899)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
