"""The README's promises: its configuration table lists every setting, its commands exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_table_lists_every_setting() -> None:
    result = subprocess.run([sys.executable, "scripts/config_table.py", "--check"], cwd=ROOT)
    assert result.returncode == 0, "README's configuration table is stale: run python scripts/config_table.py"


def test_readme_commands_are_the_makefile_targets() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make serve" in readme and "make test" in readme
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^serve:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "pytest" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()
