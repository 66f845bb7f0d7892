"""Code shape: no function in stts_core/ longer than 60 lines, checked by scripts/function_lengths.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "function_lengths.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          cwd=SCRIPT.parent.parent)


def test_the_script_measures_methods_and_nested_functions_and_fails_over_the_limit(tmp_path: Path) -> None:
    source = tmp_path / "sample.py"
    body = "\n".join(f"    x{i} = {i}" for i in range(8))
    source.write_text(textwrap.dedent('''\
        def short():
            return 1


        class Box:
            @property
            def size(self):
        ''') + "\n".join(f"        y{i} = {i}" for i in range(3)) + "\n        return 3\n\n\n"
        + "def outer():\n    def inner():\n        return 2\n" + body + "\n    return inner\n")
    done = _run("--max", "12", str(source))
    assert done.returncode == 0, done.stdout + done.stderr
    lengths = {line.split()[2]: int(line.split()[0]) for line in done.stdout.splitlines() if "sample.py:" in line}
    assert lengths == {"short": 2, "Box.size": 5, "outer": 12, "outer.inner": 2}
    assert "OVER" not in done.stdout
    done = _run("--max", "4", "--over", str(source))
    assert done.returncode == 1
    assert {line.split()[2] for line in done.stdout.splitlines() if "OVER" in line} == {"Box.size", "outer"}


def test_relative_paths_and_unparsable_files(tmp_path: Path) -> None:
    done = _run("stts_core/train/objective.py")
    assert done.returncode in (0, 1) and "stts_core/train/objective.py:" in done.stdout and "stts_loss" in done.stdout
    broken = tmp_path / "broken.py"
    broken.write_text("def f(:\n")
    done = _run(str(broken))
    assert done.returncode == 2 and "cannot parse" in done.stderr and "Traceback" not in done.stderr


def test_no_function_in_stts_core_is_longer_than_60_lines() -> None:
    done = _run("--over")
    assert done.returncode == 0, "functions over 60 lines:\n" + done.stdout
