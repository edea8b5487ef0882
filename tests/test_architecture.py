"""The layer rules of docs/architecture.md are contracts (pyproject's [tool.importlinter]),
checked here with import-linter on the package as it installs: hls/, auth/ and web/ are mapped
to rtmpd.hls, rtmpd.auth and rtmpd.web by setuptools, so the check runs on a copy of the
source laid out the way the wheel lays it out."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"


def installed_layout(target: Path) -> Path:
    """Copy the package folders to `target` as setuptools' package-dir maps them."""
    setup = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package, folder in sorted(setup["package-dir"].items()):
        shutil.copytree(ROOT / folder, target / package.replace(".", "/"), ignore=ignore,
                        dirs_exist_ok=True)  # fmt: skip
    return target


def lint_imports(site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(lint), str(PYPROJECT), "--no-cache"],
        cwd=site, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_every_layer_contract_is_kept(tmp_path: Path) -> None:
    result = lint_imports(installed_layout(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    kept = [line for line in result.stdout.splitlines() if line.rstrip().endswith("KEPT")]
    contracts = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]
    assert len(kept) == len(contracts)


def test_a_forbidden_import_breaks_the_check(tmp_path: Path) -> None:
    site = installed_layout(tmp_path)
    (site / "rtmpd" / "hls" / "leak.py").write_text("from rtmpd.auth import keys\n")
    (site / "rtmpd" / "rtmp" / "io.py").write_text("import asyncio\n")
    result = lint_imports(site)
    assert result.returncode != 0
    broken = [line for line in result.stdout.splitlines() if line.rstrip().endswith("BROKEN")]
    assert any("hls never imports" in line for line in broken), result.stdout
    assert any("sans-I/O" in line for line in broken), result.stdout
    assert "rtmpd.hls.leak -> rtmpd.auth" in result.stdout


def test_the_wheel_layout_is_what_the_check_sees(tmp_path: Path) -> None:
    site = installed_layout(tmp_path)
    for module in ("rtmpd/rtmp/session.py", "rtmpd/server.py", "rtmpd/hls/packager.py",
                   "rtmpd/auth/service.py", "rtmpd/web/app.py"):  # fmt: skip
        assert (site / module).is_file(), module


def test_the_whole_package_passes_mypy_strict(tmp_path: Path) -> None:
    site = installed_layout(tmp_path)
    mypy = Path(sys.executable).with_name("mypy")
    result = subprocess.run(
        [str(mypy), "--config-file", str(PYPROJECT), "--no-incremental", "-p", "rtmpd"],
        cwd=site, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout
