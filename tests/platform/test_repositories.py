"""Repositories own every query: outside the ``repository.py`` modules no application code
builds SQL or runs a statement, so a query is found, reviewed and changed in one place.

Two modules are the exceptions, by what they are: ``app/db.py`` (engines, sessions, the
generic insert of a new row, migrations and the default tenant) and ``app/api/health.py``
(the readiness probe's ``SELECT 1``).
"""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"
#: SQLAlchemy's statement builders.
BUILDERS = {"select", "insert", "update", "delete", "text"}
#: Methods that run a statement on any receiver (a session, a connection, an engine).
RUNNERS = {"execute", "scalar", "scalars"}
#: Session methods that load or delete rows.
SESSION_METHODS = {"get", "delete", "merge", "query"}
ALLOWED = {Path("db.py"), Path("api/health.py")}


def _queries(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    builders = {alias.asname or alias.name for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy")
                for alias in node.names if alias.name in BUILDERS}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        if isinstance(function, ast.Name) and function.id in builders:
            found.append(f"{function.id}() at line {node.lineno}")
        elif isinstance(function, ast.Attribute) and (
                function.attr in RUNNERS
                or (function.attr in SESSION_METHODS and isinstance(function.value, ast.Name)
                    and function.value.id == "session")):
            found.append(f".{function.attr}() at line {node.lineno}")
    return found


def test_only_repositories_query_the_database() -> None:
    offenders = {}
    for path in sorted(APP.rglob("*.py")):
        relative = path.relative_to(APP)
        if path.name == "repository.py" or relative in ALLOWED or relative.parts[0] == "analysis":
            continue
        if found := _queries(path):
            offenders[str(relative)] = found
    assert not offenders, offenders


def test_the_check_sees_a_query_outside_a_repository(tmp_path: Path) -> None:
    module = tmp_path / "service.py"
    module.write_text("from sqlalchemy import select as s\n"
                      "def f(session, conn):\n"
                      "    session.get(A, 1)\n"
                      "    conn.execute(s(A))\n", encoding="utf-8")
    assert sorted(_queries(module)) == [".execute() at line 4", ".get() at line 3", "s() at line 4"]
