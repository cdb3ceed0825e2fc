"""Examples are tests: the README's Python example runs and gives sane numbers."""

import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow  # ~1 min: a 12-month FE run of both bones and a 2-patient study
@pytest.mark.serial
def test_readme_python_example(tmp_path, capsys):
    code = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert code, "README has no python example"
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        ns = {}
        exec(compile(code[0], "README.md", "exec"), ns)
    finally:
        os.chdir(cwd)
    fall, res, results = ns["fall"], ns["res"], ns["results"]
    assert 500 < fall.fracture_load_n < 20000 and fall.stiffness_n_per_mm > 0
    assert res.series["ls_bmd_pct"][-1] > 0 and len(res.months) == 13
    assert (tmp_path / "results" / "frame" / "summary.json").exists()
    assert "romosozumab" in results.format_table()
