"""Coverage-guided fuzzing of one target with atheris (libFuzzer), off CI.

    pip install atheris                      # into the project's virtualenv
    python -m fuzz.run TARGET [SECONDS] [libFuzzer options...]

TARGET is one of fuzz/targets.py's TARGETS (session, handshake, amf0, amf3, flv, exheader,
segmenter).
The run starts from the committed seeds in fuzz/corpus/TARGET, keeps the inputs it finds in a
work folder outside the repository (RTMPD_FUZZ_WORK, default $TMPDIR/rtmpd-fuzz/TARGET), and
writes any crashing input to fuzz/crashes/TARGET/, where tests/test_hostile_fuzz.py replays it
on every test run: commit it with the fix. It ends with libFuzzer's statistics (execs, corpus
size, coverage) on stderr.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent

with atheris.instrument_imports(include=["rtmpd", "fuzz.targets"]):
    from fuzz import targets


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in targets.TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(targets.TARGETS)}}} [SECONDS] [options]")
    name = sys.argv[1]
    rest = sys.argv[2:]
    seconds = rest.pop(0) if rest and rest[0].isdigit() else "180"
    work = Path(os.environ.get("RTMPD_FUZZ_WORK", Path(tempfile.gettempdir()) / "rtmpd-fuzz"))
    work = work / name
    work.mkdir(parents=True, exist_ok=True)
    crashes = HERE / "crashes" / name
    crashes.mkdir(parents=True, exist_ok=True)
    args = [
        sys.argv[0],
        f"-max_total_time={seconds}",
        "-timeout=10",
        "-rss_limit_mb=2048",
        "-max_len=65536" if name == "session" else "-max_len=16384",
        f"-artifact_prefix={crashes}/",
        "-print_final_stats=1",
        *rest,
        str(work),
        str(HERE / "corpus" / name),
    ]
    atheris.Setup(args, targets.TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
