"""The distribution installs one import name, `rtmpd`, with hls/, auth/ and web/ under it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_installed_subpackages_come_from_the_top_level_folders(tmp_path: Path) -> None:
    code = (
        "import importlib.util, rtmpd.hls, rtmpd.auth, rtmpd.web;"
        "print(rtmpd.hls.__file__, rtmpd.auth.__file__, rtmpd.web.__file__);"
        "print([n for n in ('hls', 'auth', 'web') if importlib.util.find_spec(n)])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    files, leaked = out.stdout.splitlines()
    assert leaked == "[]"  # no top-level hls, auth or web from this distribution
    for name in ("hls", "auth", "web"):
        assert f"{name}/__init__.py" in files or f"{name}\\__init__.py" in files


def test_wheel_holds_only_rtmpd_with_templates_and_static_files(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("rtmpd-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"rtmpd", next(t for t in tops if t.endswith(".dist-info"))}
    for needed in (
        "rtmpd/rtmp/session.py",
        "rtmpd/hls/packager.py",
        "rtmpd/auth/store.py",
        "rtmpd/web/app.py",
        "rtmpd/web/templates/channel.html",
        "rtmpd/web/static/player.js",
    ):
        assert needed in names
    assert not any(name.startswith("rtmpd/tests") for name in names)
