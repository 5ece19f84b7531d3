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
