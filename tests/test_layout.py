"""The house rules of docs/architecture.md, checked on the source tree itself.

Each rule reads the code with ``ast`` (imports inside functions and under ``TYPE_CHECKING`` count: a cycle
that only a late import breaks is still a cycle), so it fails the moment someone breaks it.
"""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("atinuke", "workbench", "probes", "ui")
# Who may import whom: the app layer sits on probes, probes on the workbench, the workbench on atinuke.
ALLOWED_IMPORTS = {
    "atinuke": {"atinuke"},
    "workbench": {"atinuke", "workbench"},
    "probes": {"atinuke", "workbench", "probes"},
    "ui": {"atinuke", "workbench", "probes", "ui"},
    "app": {"ui"},
}
MAX_LINES = 600
# Files that may name a model family's modules: the family adapters, Atinuke's own definition, the BERT
# baseline's weight map, and the one function with which atinuke's fine-tuning freezes lower layers.
FAMILY_PATH_HOMES = ("workbench/models/", "atinuke/model.py", "atinuke/baseline.py", "atinuke/encoders.py")
FAMILY_ATTRIBUTE_CHAINS = {("encoder", "layer"), ("attention", "self"), ("transformer", "h"), ("model", "layers"),
                           ("encoder", "blocks"), ("encoder", "embed"), ("encoder", "embeddings"),
                           ("embeddings", "word_embeddings"), ("embeddings", "position_embeddings"),
                           ("gpt_neox", "layers"), ("distilbert", "transformer"), ("embeddings", "tok_embeddings"),
                           ("encoder", "rel_embeddings"), ("deberta", "encoder")}
FAMILY_PATH_STRINGS = ("encoder.layer", "attention.self", "transformer.h.", "model.layers", "embeddings.word_embeddings",
                       "embeddings.tok_embeddings")


def _source_files() -> list[Path]:
    files = [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]
    return files + [ROOT / "app.py"]


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


@lru_cache(maxsize=1)
def _import_graph() -> tuple[frozenset[str], frozenset[tuple[str, str]]]:
    """(first-party modules, import edges importer -> imported) over every import statement."""
    modules = {_module_name(p)[0]: p for p in _source_files()}
    edges: set[tuple[str, str]] = set()
    for name, path in modules.items():
        is_package = _module_name(path)[1]
        base = name.split(".") if is_package else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = base[: len(base) - (node.level - 1)]
                    source = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
            for target in targets:
                while target not in modules and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in modules and target != name:
                    edges.add((name, target))
    return frozenset(modules), frozenset(edges)


def test_no_import_cycle_between_modules():
    modules, edges = _import_graph()
    names = sorted(modules)
    index = {n: i for i, n in enumerate(names)}
    graph = csr_matrix((np.ones(len(edges)), ([index[a] for a, _ in edges], [index[b] for _, b in edges])),
                       shape=(len(names), len(names)))
    _, labels = connected_components(graph, directed=True, connection="strong")
    cycles = [sorted(names[i] for i in np.flatnonzero(labels == label)) for label in set(labels.tolist())
              if (labels == label).sum() > 1]
    assert not cycles, f"import cycles: {cycles}"


def test_the_graph_sees_late_and_relative_imports():
    """The rule above would pass vacuously if the graph missed imports inside functions."""
    _, edges = _import_graph()
    assert ("atinuke.finetune", "atinuke.tasks") in edges  # imported inside finetune()
    assert ("workbench.models", "workbench.models.bert") in edges


def test_packages_import_only_the_layers_below():
    _, edges = _import_graph()
    wrong = sorted((a, b) for a, b in edges if b.split(".")[0] not in ALLOWED_IMPORTS[a.split(".")[0]])
    assert not wrong, f"imports against the layering of docs/architecture.md: {wrong}"


def _imported_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_app_layer_imports_streamlit():
    users = [str(p.relative_to(ROOT)) for p in _source_files()
             if "streamlit" in _imported_names(ast.parse(p.read_text(encoding="utf-8")))]
    assert users and all(u == "app.py" or u.startswith("ui/") for u in users), users


@pytest.mark.parametrize("folder", [*PACKAGES, "tests", "bench"])
def test_no_file_over_600_lines(folder):
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / folder).rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"split these files (over {MAX_LINES} lines): {long}"


def _attribute_chains(tree: ast.AST) -> set[tuple[str, str]]:
    chains = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            inner = node.value
            if isinstance(inner, ast.Attribute):
                chains.add((inner.attr, node.attr))
            elif isinstance(inner, ast.Name):
                chains.add((inner.id, node.attr))
    return chains


def test_model_family_module_paths_live_in_their_adapters():
    found = {}
    for path in _source_files():
        relative = str(path.relative_to(ROOT))
        if relative.startswith(FAMILY_PATH_HOMES):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        chains = _attribute_chains(tree) & FAMILY_ATTRIBUTE_CHAINS
        strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
                   and isinstance(node.value, str) and any(s in node.value for s in FAMILY_PATH_STRINGS)}
        if chains or strings:
            found[relative] = sorted(chains) + sorted(strings)
    assert not found, f"model-family module paths outside workbench/models/: {found}"


def test_private_names_stay_in_their_module():
    modules, _ = _import_graph()
    offenders = []
    for path in _source_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        module_aliases = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
                for alias in node.names:
                    if f"{node.module}.{alias.name}" in modules:
                        module_aliases.add(alias.asname or alias.name)
                    elif alias.name.startswith("_") and not alias.name.startswith("__"):
                        offenders.append(f"{path.relative_to(ROOT)}: from {node.module} import {alias.name}")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in module_aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                offenders.append(f"{path.relative_to(ROOT)}: {node.value.id}.{node.attr}")
    assert not offenders, offenders


# A task kind is one object (atinuke/tasks/kinds/, workbench/kinds/): its name is compared nowhere else.
TASK_KIND_HOMES = ("atinuke/tasks/kinds/", "workbench/kinds/")
TASK_KIND_NAMES = frozenset({"classification", "regression", "span_qa", "tagging", "coref"})


def _is_kind_read(node: ast.AST) -> bool:
    """``kind``, ``x.kind``, ``getattr(x, "kind", ...)`` or ``x.get("kind")``: a read of some kind attribute."""
    if isinstance(node, ast.Name):
        return node.id == "kind"
    if isinstance(node, ast.Attribute):
        return node.attr == "kind"
    if isinstance(node, ast.Call) and node.args:
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        key = node.args[1] if name == "getattr" and len(node.args) > 1 else node.args[0] if name == "get" else None
        return isinstance(key, ast.Constant) and key.value == "kind"
    return False


def _task_kind_literals(node: ast.AST) -> set[str]:
    values = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return {v.value for v in values if isinstance(v, ast.Constant) and v.value in TASK_KIND_NAMES}


def _kind_dispatch(tree: ast.AST) -> list[str]:
    """Comparisons of a kind read with a task kind's name, and dicts keyed by two or more task kinds' names."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_is_kind_read(s) for s in sides) and any(_task_kind_literals(s) for s in sides):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)} & TASK_KIND_NAMES
            if len(keys) >= 2:
                found.append(f"line {node.lineno}: a dict keyed by task kinds {sorted(keys)}")
    return found


def test_task_kinds_are_dispatched_through_their_registries():
    """No ``spec.kind == "span_qa"`` chain or kind-keyed dict outside the kind files (issue #12)."""
    found = {}
    for path in _source_files():
        relative = str(path.relative_to(ROOT))
        if not relative.startswith(TASK_KIND_HOMES) and (hits := _kind_dispatch(ast.parse(path.read_text("utf-8")))):
            found[relative] = hits
    assert not found, f"dispatch on task kinds outside atinuke/tasks/kinds/ and workbench/kinds/: {found}"


def test_the_kind_dispatch_rule_sees_each_form_and_spares_other_kinds():
    """The rule above would pass vacuously if it missed a form; it must not flag encoder or SAE kinds."""
    flagged = ['if spec.kind == "span_qa": pass', 'x = kind in ("classification", "regression")',
               'y = getattr(task, "kind", None) == "coref"', 'z = config.get("kind") != "tagging"',
               'w = {"span_qa": 1, "tagging": 2}[kind]']
    spared = ['if encoder.kind == "hf": pass', 'a = self.kind == "depth"', 'b = kind in ("atinuke", "hf")',
              'c = {"coref": 1, "srl": 2}', 'd = spec.family == "coref"']
    assert all(_kind_dispatch(ast.parse(code)) for code in flagged)
    assert not any(_kind_dispatch(ast.parse(code)) for code in spared)
