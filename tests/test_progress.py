"""Progress lines: counts, rate, ETA, throttling, quiet."""

from __future__ import annotations

import time

from deepgen.progress import Progress, format_duration, format_line, progress_enabled


def test_format_duration_and_line():
    assert [format_duration(s) for s in (0, 42.4, 117, 3600 + 180)] == ["0s", "42s", "1m57s", "1h03m"]
    assert format_line("extract", 120, 3000, 120 / 24.7) == "extract: 120/3000 (4.0%) 24.7 items/s, ETA 1m57s"
    assert format_line("score", 0, 10, 0.0) == "score: 0/10 (0.0%) 0.0 items/s"
    assert format_line("synth", 10, 10, 2.0, unit="videos") == "synth: 10/10 (100.0%) 5.0 videos/s, done in 2s"
    # a resumed run: the whole job's count, this run's rate
    assert format_line("extract", 60, 100, 2.0, start=50) == "extract: 60/100 (60.0%) 5.0 items/s, ETA 8s"


def test_throttled_lines_and_final_line():
    lines: list[str] = []
    with Progress(5, "job", log=lines.append, every_s=3600) as p:
        for _ in range(5):
            p.update()
    assert lines and len(lines) == 1 and lines[0].startswith("job: 5/5 (100.0%)")
    lines.clear()
    p = Progress(3, "job", log=lines.append, every_s=0.0)
    p.update(2)
    time.sleep(0.01)
    p.update()
    p.close()
    p.close()
    assert [line.split(" ")[1] for line in lines] == ["2/3", "3/3", "3/3"]


def test_quiet(monkeypatch):
    lines: list[str] = []
    with Progress(2, "job", log=lines.append, quiet=True, every_s=0) as p:
        p.update(2)
    assert lines == [] and not progress_enabled(True) and progress_enabled(False)
    monkeypatch.setenv("DEEPGEN_QUIET", "1")
    assert not progress_enabled(False)
