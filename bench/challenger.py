"""What a challenger costs the requests it answers: the same app with the plugin, without and with a
challenger answering every request, side by side in one run.

    .venv/bin/python -m bench.challenger [--seconds 10] [--concurrency 8] [--rounds 3]

The bench app's LangServe route (``bench/app.py``) with the plugin, Label Studio up, once as it is
and once with ``Project(challenger=..., challenger_rate=1.0)``: a challenger that takes 200 ms (the
route's chain on a fake model that blocks its thread that long, as a client waiting on an LLM
does), in the pool as shipped (``challenger_concurrency=2``, ``challenger_queue=100``). Rounds
alternate the two, the order flipped every round (A B, B A, ...), each run a fresh app process on
core 0 with a fresh state directory; the load (``wrk``, else ``bench/load.py``) and Label Studio on
core 1, as in ``bench.overhead``.

Scenarios: a 200 ms model (the route as an LLM app serves it) and an instant model (the worst case:
the app does nothing but serve, capture and hand every request to the challenger). Columns: req/s,
p50 and p99 without the challenger and the ratios with it (averages of the rounds; the p99 ratio's
range over the rounds beside it), the app's CPU per request, and what the challenger did in the
runs with it: comparisons made and requests dropped at the full queue (two threads of 200 ms make
at most 10 comparisons a second, so under this load most requests are dropped: the bound at work).
Every run also checks that a request's response is the model's own.

Target: the p99 with the challenger within 1.05x of the p99 without.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.overhead import label_studio_beside, load_arguments, measure

TARGET_P99 = 1.05
CHALLENGER_MS = 200


def main() -> None:
    args = load_arguments(__doc__, rounds=3)

    server = label_studio_beside(args.label_studio_port, args.label_studio_data_dir)
    state = Path(tempfile.mkdtemp(prefix="bench-challenger-"))
    scenarios = [("200 ms model", 200), ("instant model", 0)]
    loader = "wrk" if shutil.which("wrk") else "bench/load.py"
    print(
        f"{os.cpu_count()} CPUs, load from {loader}, {args.concurrency} connections, {args.seconds:.0f} s per run, "
        f"{args.rounds} rounds alternating without/with a {CHALLENGER_MS} ms challenger at challenger_rate=1.0\n"
    )
    print(
        f"{'scenario':16} {'rps':>6} {'with':>6} {'ratio':>6} {'p50':>8} {'ratio':>6} {'p99':>8} {'ratio':>6} "
        f"{'p99 ratio range':>16} {'CPU ms/req':>12} {'compared':>9} {'dropped':>8}",
        flush=True,
    )
    runs = 0
    worst = 0.0
    for name, delay in scenarios:
        if args.only and args.only not in name:
            continue
        project = f"Bench challenger {time.strftime('%Y%m%d-%H%M%S')}"
        env = {
            "BENCH_DELAY_MS": str(delay),
            "BENCH_PROJECT": project,
            "BENCH_CAPTURE": "1",
            "LABEL_STUDIO_URL": server.url,
            "LABEL_STUDIO_API_KEY": server.api_key,
        }
        without: list[dict] = []
        with_: list[dict] = []
        for round_ in range(args.rounds):
            order = [False, True] if round_ % 2 == 0 else [True, False]
            for challenger in order:
                runs += 1
                run_env = {**env, "LABEL_STUDIO_STATE_DIR": str(state / str(runs))}
                if challenger:
                    run_env["BENCH_CHALLENGER_MS"] = str(CHALLENGER_MS)
                result = measure(run_env, args, health=True)
                expected = "answer to Tell me about cats"
                assert result["answer"] == expected, f"the response changed: {result['answer']!r}"
                (with_ if challenger else without).append(result)

        def avg(rows: list[dict], key: str) -> float:
            return sum(r[key] for r in rows) / len(rows)

        rps, rps_c = avg(without, "rps"), avg(with_, "rps")
        p50, p50_c = avg(without, "p50_ms"), avg(with_, "p50_ms")
        p99, p99_c = avg(without, "p99_ms"), avg(with_, "p99_ms")
        per_round = [c["p99_ms"] / w["p99_ms"] for w, c in zip(without, with_, strict=True)]
        served = sum(r["served"] for r in with_)
        compared = sum(r["health"]["captured"] for r in with_) - served
        dropped = sum(r["health"]["skipped"].get("challenger_dropped", 0) for r in with_)
        failed = sum(r["health"]["skipped"].get("challenger_failed", 0) for r in with_)
        errors = sum(r["errors"] for r in without + with_)
        worst = max(worst, p99_c / p99)
        print(
            f"{name:16} {rps:6.0f} {rps_c:6.0f} {rps_c / rps:6.3f} {p50:6.1f}ms {p50_c / p50:6.3f} "
            f"{p99:6.1f}ms {p99_c / p99:6.3f} {min(per_round):7.3f}–{max(per_round):<7.3f} "
            f"{avg(without, 'cpu_ms_per_request'):5.2f}/{avg(with_, 'cpu_ms_per_request'):<5.2f} "
            f"{compared:9d} {dropped / served:7.1%}"
            + (f"  ({errors} errors)" if errors else "")
            + (f"  ({failed} challenger failures)" if failed else ""),
            flush=True,
        )
    if worst:
        verdict = "within" if worst <= TARGET_P99 else "OVER"
        print(f"\nworst p99 ratio {worst:.3f}: {verdict} the {TARGET_P99}x target")
    shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
