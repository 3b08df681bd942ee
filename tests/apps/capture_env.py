"""Capture settings of the test graphs, from the environment the tests start the server with.

``CAPTURE_DELIVERY_INTERVAL_S`` and ``CAPTURE_EXIT_TIMEOUT_S`` default to the package's defaults;
the shutdown test sets them so that only a drain at shutdown delivers.
"""

import os

from langchain_label_studio import Settings


def settings() -> Settings:
    return Settings(
        delivery_interval_s=float(os.environ.get("CAPTURE_DELIVERY_INTERVAL_S", "1")),
        exit_timeout_s=float(os.environ.get("CAPTURE_EXIT_TIMEOUT_S", "5")),
    )
