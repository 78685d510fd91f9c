"""Regenerate the configuration table in README.md from app.config.Settings.

    python scripts/config_table.py          # rewrite README.md
    python scripts/config_table.py --check  # exit 1 if the README is stale (used by the tests)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from app.config import Settings  # noqa: E402

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- config-table:start -->", "<!-- config-table:end -->"


def table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "" if default in ("", None) else str(default)
        if name == "database_url":
            shown = "sqlite:///<data_dir>/convlens.db"
        rows.append(f"| `CONVLENS_{name.upper()}` | `{shown}` | {field.description or ''} |".replace("``", ""))
    return "\n".join(rows)


def render(text: str) -> str:
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{table()}\n{END}{tail}"


if __name__ == "__main__":
    current = README.read_text()
    wanted = render(current)
    if "--check" in sys.argv:
        sys.exit(0 if current == wanted else 1)
    README.write_text(wanted)
