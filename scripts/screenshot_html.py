"""Render a feedback page (`grade ... --html FILE`) to PNG with headless Chromium.

    python scripts/screenshot_html.py feedback.html feedback.png [--height 2400] [--width 1100]

Needs Debian's `chromium` (apt-get install chromium). Flags keep Chromium off the network.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def chromium() -> str | None:
    return next(
        (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None
    )


def screenshot(html: Path, png: Path, width: int = 1100, height: int = 2400) -> None:
    browser = chromium()
    if browser is None:
        raise SystemExit("chromium not found: apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                browser,
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                f"--screenshot={png.resolve()}",
                html.resolve().as_uri(),
            ],
            check=True,
            timeout=120,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("html", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--height", type=int, default=2400)
    parser.add_argument("--width", type=int, default=1100)
    args = parser.parse_args()
    screenshot(args.html, args.png, width=args.width, height=args.height)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    sys.exit(main())
