#!/usr/bin/env python3
"""Renders the XTTS Desktop window (tiny random-weight model, sample text, playing) to a PNG.

    make screenshot      # under Xvfb (installs the X libraries when root)
    .venv/bin/python scripts/screenshot.py [docs/screenshot.png]   # offscreen

It renders with Qt's offscreen platform (the same raster painting as on a screen), so it
needs no display; QT_QPA_PLATFORM=xcb under `xvfb-run -a` works too where the system has
libxcb-cursor0. Audio goes to the default output (run scripts/setup_test_env.sh first on a
machine without a sound card). The user's own settings and voices are not touched: the
window runs on temporary folders.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "resources" / "samples" / "welcome-en.txt"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default=str(REPO / "docs" / "screenshot.png"))
    parser.add_argument("--width", type=int, default=1120)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--timeout", type=float, default=240.0)
    args = parser.parse_args()

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    scratch = Path(tempfile.mkdtemp(prefix="xtts-screenshot-"))
    for name in ("CONFIG", "DATA", "LOG"):
        os.environ[f"XTTS_DESKTOP_{name}_DIR"] = str(scratch / name.lower())
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    sys.path.insert(0, str(REPO))

    from PySide6.QtCore import QEventLoop
    from PySide6.QtWidgets import QApplication

    from xtts_desktop import config
    from xtts_desktop.engine.random_model import cached_random_model
    from xtts_desktop.gui import create_window
    from xtts_desktop.gui.icons import icon

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("XTTS Desktop")
    app.setWindowIcon(icon("xtts-desktop"))
    model_dir = cached_random_model(config.cache_dir(), "tiny")

    deadline = time.monotonic() + args.timeout

    def wait_for(condition, what: str) -> None:
        while not condition():
            if time.monotonic() > deadline:
                raise SystemExit(f"screenshot: timed out waiting for {what}")
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)

    window = create_window(model_dir=model_dir, device="cpu")
    window.resize(args.width, args.height)
    window.show()
    wait_for(lambda: window.is_model_ready or window.model_error, "the model")
    if window.model_error:
        raise SystemExit(f"screenshot: {window.model_error}")
    window.text_view.setPlainText(SAMPLE.read_text(encoding="utf-8"))
    window.start_reading("all")
    job = window.play_job
    # Enough playing for a first-audio figure, a highlighted sentence and a few seconds of plot.
    wait_for(
        lambda: (
            job.player is not None
            and job.player.first_sample_time is not None
            and window.text_view.highlight is not None
            and len(window.latency_panel.plot.points) >= 125
            and max(value for _, value in window.latency_panel.plot.points) >= 0.25
        ),
        "playback",
    )
    if window.play_job is None:
        raise SystemExit("screenshot: playback ended early (see the status bar)")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if not window.grab().save(str(output)):
        raise SystemExit(f"screenshot: could not write {output}")
    print(f"screenshot: {output} ({window.width()}x{window.height()})")
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
