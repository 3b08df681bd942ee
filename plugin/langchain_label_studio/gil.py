"""Background threads share the GIL with the app's: in long loops they step aside now and then.

``time.sleep(0)`` hands the GIL over (else the app waits up to the 5 ms switch interval) but
costs a system call, so it is done once every :data:`EVERY` items rather than for each.
"""

from __future__ import annotations

import time

EVERY = 32


def step_aside(i: int) -> None:
    """Call with the index of each item of a loop run in a background thread."""
    if i % EVERY == EVERY - 1:
        time.sleep(0)
