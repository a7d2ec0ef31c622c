"""The polling focus watcher used by the Windows and macOS probes."""

from __future__ import annotations

import dataclasses
import threading

from agent.events import AppIdentity, Rect, WindowInfo
from agent.sources.window import PollingFocusWatch

EDITOR = WindowInfo(1, AppIdentity(process_name="editor"), "notes.txt", Rect(0, 0, 10, 10))
RENAMED = dataclasses.replace(EDITOR, title="notes.txt (edited)")


def test_polling_reports_each_change_of_window_or_title_once() -> None:
    script: list[WindowInfo | None] = [None, EDITOR, EDITOR, RENAMED, RENAMED, None]
    seen: list[WindowInfo | None] = []
    done = threading.Event()
    reads = 0

    def read() -> WindowInfo | None:
        nonlocal reads
        reads += 1
        if reads > len(script):
            done.set()
            return None
        return script[reads - 1]

    watch = PollingFocusWatch(read, interval=0.001)
    watch.subscribe(seen.append)
    assert done.wait(5)
    watch.close()
    assert seen == [None, EDITOR, RENAMED, None]
