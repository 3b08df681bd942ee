"""Memory: RSS the plugin adds to an app process, and whether it stays flat during an outage.

    .venv/bin/python -m bench.memory [--minutes 10] [--concurrency 4]

Runs the bench app bare and with the plugin (Label Studio unreachable the whole time, so
every capture piles up in the outbox) under the same load, sampling RSS every 10 s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, bench_app, free_port, rss_mb


def run(env: dict[str, str], minutes: float, concurrency: int) -> list[float]:
    with bench_app(env) as (server, url):
        load = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "load.py"), url, str(concurrency), str(minutes * 60)],
            stdout=subprocess.DEVNULL,
        )
        samples = []
        while load.poll() is None:
            samples.append(rss_mb(server.pid))
            time.sleep(10)
        return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    bare = run({}, args.minutes, args.concurrency)
    state = tempfile.mkdtemp(prefix="bench-memory-")
    plugin_env = {
        "BENCH_CAPTURE": "1",
        "LABEL_STUDIO_URL": f"http://127.0.0.1:{free_port()}",
        "LABEL_STUDIO_API_KEY": "unused",
        "LABEL_STUDIO_STATE_DIR": state,
    }
    plugin = run(plugin_env, args.minutes, args.concurrency)
    outbox = sum(f.stat().st_size for f in Path(state).glob("outbox-*"))
    print(f"{args.minutes:g} min under load, Label Studio unreachable, RSS sampled every 10 s (MB)")
    print(f"bare   : start {bare[0]:6.1f}  end {bare[-1]:6.1f}  min {min(bare):6.1f}  max {max(bare):6.1f}")
    print(f"plugin : start {plugin[0]:6.1f}  end {plugin[-1]:6.1f}  min {min(plugin):6.1f}  max {max(plugin):6.1f}")
    steady = plugin[len(plugin) // 4 :]
    print(
        f"plugin adds {plugin[-1] - bare[-1]:.1f} MB at the end; after warm-up it moved "
        f"{max(steady) - min(steady):.1f} MB while the outbox grew to {outbox / 1e6:.0f} MB on disk"
    )


if __name__ == "__main__":
    main()
