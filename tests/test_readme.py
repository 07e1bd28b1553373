"""The README's set-up commands and CI stay in step."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci_lines = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln.startswith("python3 -m venv")]
    assert len(ci_lines) == 1
    assert ci_lines[0] in readme
    blocks = [b.split("```")[0].strip() for b in readme.split("```\n")[1::2]]
    assert blocks[0].endswith("diag demo")  # command 1: install and run the main job
    assert blocks[1] == ci_lines[0]  # command 2: install and run the tests
