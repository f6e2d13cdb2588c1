"""Fixtures that break things for real: a tiny full disk, a read-only disk, an immutable
folder, and a process without root's power to ignore file permissions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Callable[..., Path]]:
    """mount a tmpfs of a given size (a real full disk: ENOSPC from the kernel); needs root."""
    mounted: list[Path] = []

    def mount(size: str = "64k", name: str = "disk", read_only: bool = False) -> Path:
        if shutil.which("mount") is None:
            pytest.skip("no mount command")
        point = tmp_path / name
        point.mkdir()
        options = f"size={size},mode=0777" + (",ro" if read_only else "")
        result = _run("mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point))
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}): run as root")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        result = _run("umount", str(point))
        if result.returncode != 0:
            _run("umount", "-l", str(point))


@pytest.fixture
def immutable() -> Iterator[Callable[[Path], Path]]:
    """chattr +i: not even root may create or delete anything in the folder."""
    locked: list[Path] = []

    def lock(path: Path) -> Path:
        if shutil.which("chattr") is None:
            pytest.skip("no chattr command")
        result = _run("chattr", "+i", str(path))
        if result.returncode != 0:
            pytest.skip(f"chattr +i does not work here ({result.stderr.strip()})")
        locked.append(path)
        return path

    yield lock
    for path in locked:
        _run("chattr", "-i", str(path))


def _dropping_file_permissions_override() -> list[str] | None:
    """A command prefix that runs a program without CAP_DAC_OVERRIDE/READ_SEARCH, or None.

    Root reads and writes whatever the permission bits say; without these two capabilities
    it is held to them like anyone. As a normal user no prefix is needed."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        return None
    return [
        "setpriv",
        "--inh-caps=-dac_override,-dac_read_search",
        "--bounding-set=-dac_override,-dac_read_search",
        "--",
    ]


@pytest.fixture
def run_without_override() -> Callable[[str], dict]:
    """Run Python code held to file permissions (even as root); it prints one JSON line."""
    prefix = _dropping_file_permissions_override()
    if prefix is None:
        pytest.skip("running as root and setpriv is missing: permissions cannot be enforced")

    def run(code: str) -> dict:
        result = subprocess.run(
            [*prefix, sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=240,
            cwd=ROOT,
            env=dict(os.environ),
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    return run


def leftovers(folder: Path) -> list[str]:
    """Every entry under `folder`, hidden temporary files included."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
