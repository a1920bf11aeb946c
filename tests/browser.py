"""Headless Chromium for the tests that look at a rendered page (scripts/screenshot_html.py)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from submissions import REPO

SCREENSHOT_SCRIPT = REPO / "scripts" / "screenshot_html.py"


def require_chromium() -> None:
    """Skip, saying why, when no Chromium is installed (the screenshot script's own lookup);
    fail instead when GRADER_REQUIRE_CHROMIUM=1 (CI, where `make test` installs it)."""
    spec = importlib.util.spec_from_file_location("screenshot_html", SCREENSHOT_SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    if script.chromium() is None:
        reason = "Chromium is not installed: apt-get install chromium (`make test` does it when run as root)"
        if os.environ.get("GRADER_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"{reason}; GRADER_REQUIRE_CHROMIUM=1 requires it")
        pytest.skip(reason)


def screenshot(html, png, *options) -> None:
    """Render the page `html` into the PNG `png` (options: --width, --height)."""
    subprocess.run(
        [sys.executable, str(SCREENSHOT_SCRIPT), str(html), str(png), *map(str, options)],
        check=True,
        timeout=180,
    )
