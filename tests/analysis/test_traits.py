"""The rule registry is the one source of layer knowledge: every registered class declares what
it is (traits), and the code that used to keep its own class lists reads the traits instead."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from app.analysis.rules import REGISTRY, lookup, registered_class_names, traits_of
from app.analysis.traits import RESIDUAL_MERGES, SKIP_MERGES, Merge, Trait

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("class_name", registered_class_names())
def test_every_registered_class_declares_consistent_traits(class_name: str) -> None:
    rule = REGISTRY[class_name]
    traits = rule.traits
    assert traits, f"{class_name} declares no trait"
    assert (Trait.MERGE in traits) == (rule.merge is not None or rule.merge_of is not None)
    if Trait.TRANSPOSED in traits:
        assert {Trait.SPATIAL_KERNEL, Trait.UPSAMPLING} <= traits
    if Trait.SEPARABLE in traits or Trait.DEPTHWISE in traits:
        assert Trait.SPATIAL_KERNEL in traits
    if Trait.SPATIAL_KERNEL in traits and Trait.RECURRENT not in traits:
        assert Trait.KERNEL in traits and rule.fans is not None, "the gradient model needs the fans"
    if Trait.SCALE in traits:
        assert rule.scale_of is not None
    if Trait.FLATTEN in traits:
        assert Trait.RESHAPE in traits
    if class_name.startswith("ops."):
        assert Trait.OPERATION in traits


def test_merge_modes_follow_the_keras_semantics() -> None:
    assert lookup("Add", None).merge is Merge.SUM
    assert lookup("Add", "keras.src.ops.numpy").merge is Merge.SUM  # the Keras 3 op x + y
    assert lookup("Multiply", None).merge not in RESIDUAL_MERGES  # gating, not a shortcut
    assert lookup("Concatenate", None).merge in SKIP_MERGES
    assert lookup("Maximum", None).merge in RESIDUAL_MERGES and lookup("Maximum", None).merge not in SKIP_MERGES


def test_traits_of_class_names_from_reports() -> None:
    assert Trait.MODEL in traits_of("Sequential")
    assert traits_of("NoSuchLayer") == frozenset()
    assert Trait.POOLING in traits_of("MaxPool2D")  # the alias Keras also accepts


# Modules that may name Keras classes: the registry itself, the allowlist (security: exact
# (module, class) pairs), parsing the config format, and the worker/ingest code that reads
# Keras's serialization format.
_ALLOWED_TO_NAME_CLASSES = ("app/analysis/rules/", "app/security/", "app/analysis/parse.py",
                            "app/ingest/", "app/worker/", "app/analysis/traits.py")
_LAYER_CLASSES = {name for name in registered_class_names() if not name.startswith("ops.")}


def _matches_class_names(node: ast.AST) -> str | None:
    """The text of a string match on class names: ``name.startswith("Conv")``,
    ``name.endswith(("1D", "2D"))`` or ``"Transpose" in name``, where the text is part of two
    or more registered class names (None otherwise)."""
    texts: list[str] = []
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("startswith", "endswith") and node.args):
        argument = node.args[0]
        elements = argument.elts if isinstance(argument, ast.Tuple) else [argument]
        texts = [e.value for e in elements if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        check = str.startswith if node.func.attr == "startswith" else str.endswith
        for text in texts:
            if len(text) >= 3 and text[:1].isupper() and sum(check(n, text) for n in _LAYER_CLASSES) >= 2:
                return text
    if (isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant)
            and isinstance(node.left.value, str) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops)
            and not any(isinstance(c, (ast.Dict, ast.Set, ast.List, ast.Tuple)) for c in node.comparators)):
        text = node.left.value
        if len(text) >= 4 and text[:1].isupper() and sum(text in n for n in _LAYER_CLASSES) >= 2:
            return text
    return None


def test_no_module_outside_the_registry_keeps_a_list_of_layer_classes() -> None:
    """A set, tuple or list literal of two or more registered class names outside the registry is
    a second source of layer knowledge, and so is matching class names by their text
    (``startswith("Conv")``, ``"Transpose" in name``): ask the rule for a trait instead."""
    offenders = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(_ALLOWED_TO_NAME_CLASSES):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Set, ast.Tuple, ast.List)):
                names = {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
                known = names & _LAYER_CLASSES
                if len(known) >= 2:
                    offenders.append(f"{relative}:{node.lineno}: {sorted(known)}")
            if isinstance(node, ast.Compare) and any(
                isinstance(c, ast.Constant) and c.value in _LAYER_CLASSES - {"InputLayer"} for c in node.comparators
            ):
                offenders.append(f"{relative}:{node.lineno}: compares with a class name")
            matched = _matches_class_names(node)
            if matched:
                offenders.append(f"{relative}:{node.lineno}: matches class names by {matched!r}")
    assert not offenders, "class-name lists outside the rule registry:\n" + "\n".join(offenders)


def _analysis_imports() -> dict[str, set[str]]:
    """Module of app/analysis -> the app.analysis modules it imports, function-local imports
    included (the rule modules count as one, ``rules``)."""
    def short(module: str) -> str | None:
        if not module.startswith("app.analysis."):
            return None
        rest = module.removeprefix("app.analysis.").split(".")
        return rest[0]

    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / "app" / "analysis").rglob("*.py")):
        relative = path.relative_to(ROOT / "app" / "analysis")
        name = relative.parts[0].removesuffix(".py")
        if name == "__init__":
            continue
        targets = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
                if node.module == "app.analysis":
                    modules = [f"app.analysis.{alias.name}" for alias in node.names]
                for module in modules:
                    target = short(module)
                    if target is not None and target != name:
                        targets.add(target)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    target = short(alias.name)
                    if target is not None and target != name:
                        targets.add(target)
    return graph


def test_the_engine_modules_import_one_way() -> None:
    """No circle among app/analysis modules (engine -> report -> findings -> report was one,
    held together by function-local imports): the fields are summarised in ``fields``, which
    the report and the findings both import, and ``analyze`` lives on top, in ``report``."""
    graph = _analysis_imports()
    assert "report" not in graph["engine"] and "report" not in graph["findings"]
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(module: str, path: list[str]) -> None:
        if state.get(module) == 2 or cycle:
            return
        if state.get(module) == 1:
            cycle.extend(path[path.index(module):] + [module])
            return
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            visit(target, [*path, module])
        state[module] = 2

    for module in sorted(graph):
        visit(module, [])
    assert cycle == [], " -> ".join(cycle)


def test_fields_are_summarised_once_per_analysis(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.analysis import analyze, fields, findings, report
    from tests.fixtures.load import FIXTURES_DIR, load_config

    calls: list[int] = []
    original = fields.receptive_field_summary

    def counting(result: object) -> object:
        calls.append(1)
        return original(result)  # type: ignore[arg-type]

    monkeypatch.setattr(report, "receptive_field_summary", counting)
    monkeypatch.setattr(findings, "receptive_field_summary", counting)
    result = analyze(load_config(FIXTURES_DIR / "seed" / "example1.json"))
    assert calls == [1]
    assert any(f["code"].startswith("receptive_field") for f in result["findings"])


def test_a_new_layer_class_needs_a_trait_and_a_table_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """What docs/developing.md promises: a class registered without traits is refused at import,
    and one without a row in tests/analysis/layer_cases.py fails the table's coverage test."""
    from app.analysis.rules.base import register
    from app.analysis.rules.normalization import shape_identity
    from tests.analysis.test_layer_table import classes_without_a_row

    with pytest.raises(ValueError, match="at least one trait"):
        register("ScaleNormalization", "normalization", shape_identity, traits=())
    assert "ScaleNormalization" not in REGISTRY
    assert classes_without_a_row() == []
    monkeypatch.setitem(REGISTRY, "ScaleNormalization", REGISTRY["RMSNormalization"])
    assert classes_without_a_row() == ["ScaleNormalization"]
    assert Trait.NORMALIZATION in traits_of("RMSNormalization")  # the docs' worked example
