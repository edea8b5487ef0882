"""The soak harness itself (bench/soak.py), briefly: off CI (`-m slow`), so the hour-long run
documented in docs/RELIABILITY.md does not break silently."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_short_soak_is_clean(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--publishers", "2", "--minutes", "1.5",
         "--sample", "10", "--fragment", "2", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(out.read_text())["summary"]
    assert summary["problems"] == [] and summary["warnings_or_errors_logged"] == 0
    assert summary["late_stream_last_segment_h"] > 4.66  # past the 24-bit timestamp field
    assert summary["files_max"] < 4 * 40  # four streams, each a bounded window of segments
