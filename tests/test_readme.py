"""The README stays true: its Python example runs as written, and CI runs its test command."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_ci_runs_the_readme_test_command():
    test_command = next(b.strip() for b in code_blocks("bash") if b.strip().endswith("python -m pytest"))
    assert test_command in (ROOT / ".ci/run").read_text()
    assert any(
        b.strip().endswith("dvc repro") and b.strip().startswith("python3.11 -m venv") for b in code_blocks("bash")
    )


@pytest.mark.slow
def test_the_python_example_runs_as_written(tmp_path):
    (example,) = [b for b in code_blocks("python") if "perform_attack" in b]
    (tmp_path / "data").symlink_to(ROOT / "data")
    (tmp_path / "example.py").write_text(example)
    proc = subprocess.run(
        [sys.executable, "example.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=dict(os.environ, MPLBACKEND="Agg"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("Egyptian cat 0.54")
    assert lines[1] == "Egyptian cat"  # the attack kept the class
    ssim_moved = float(re.search(r"original vs adversarial map: SSIM ([\d.]+)", proc.stdout).group(1))
    ssim_target = float(re.search(r"adversarial vs target map: SSIM ([\d.]+)", proc.stdout).group(1))
    assert ssim_moved < 0.6 and ssim_target > 0.4, proc.stdout
    assert (tmp_path / "chelsea_rise.png").stat().st_size > 10_000
