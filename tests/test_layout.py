"""The layout keeps its promises: imports only point down the layers written once below, the training loop asks its
task instead of testing types, and every citation names a file a reader can open."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "initbench"

# Bottom to top: a module may import from its own package part, or from a layer below its own; never from above.
# Parts sharing a layer are independent of each other (data and models know nothing of one another).
LAYERS = (
    ("initbench.errors",),
    ("initbench.config.schema", "initbench.config.values"),
    ("initbench.config.features",),
    ("initbench.distributed",),
    ("initbench.data", "initbench.models", "initbench.optim"),
    ("initbench.inits",),
    ("initbench.config.identity",),
    ("initbench.results",),
    ("initbench.measure",),
    ("initbench.tasks",),
    ("initbench.config.checks",),
    ("initbench.train",),
    ("initbench.cli",),
    ("initbench.__main__",),
)
# Package files that only describe their package (no imports), so that importing one of its layers pulls in no other.
DESCRIPTIVE = ("initbench", "initbench.config")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    return (REPO / relative).with_suffix(".py").is_file() or (REPO / relative / "__init__.py").is_file()


def imports_of(path: Path) -> set[str]:
    """The initbench modules a file imports, anywhere in it (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from initbench.config import schema` imports the module initbench.config.schema
            found |= {f"{node.module}.{alias.name}" if is_module(f"{node.module}.{alias.name}") else node.module
                      for alias in node.names}
    return {name for name in found if name == "initbench" or name.startswith("initbench.")}


def import_graph() -> dict[str, set[str]]:
    return {module_name(path): imports_of(path) for path in sorted(PACKAGE.rglob("*.py"))}


def part_of(module: str) -> tuple[int, str]:
    """(layer, part) of a module: the longest entry of LAYERS it lies in."""
    matches = [(len(part), index, part) for index, layer in enumerate(LAYERS) for part in layer
               if module == part or module.startswith(part + ".")]
    if not matches:
        raise KeyError(module)
    _, index, part = max(matches)
    return index, part


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import that does not point down the layers, as 'importer -> imported'."""
    wrong = []
    for module, imported in graph.items():
        if module in DESCRIPTIVE:
            wrong += [f"{module} -> {name} (a package file that must import nothing)" for name in imported]
            continue
        layer, part = part_of(module)
        for name in sorted(imported):
            other_layer, other_part = part_of(name)
            if other_part != part and other_layer >= layer:
                wrong.append(f"{module} -> {name}")
    return wrong


def test_every_module_has_a_layer():
    graph = import_graph()
    unplaced = [module for module in graph if module not in DESCRIPTIVE and not _placed(module)]
    assert not unplaced, f"add these modules to LAYERS: {unplaced}"


def _placed(module: str) -> bool:
    try:
        part_of(module)
    except KeyError:
        return False
    return True


def test_imports_only_point_down():
    assert upward_imports(import_graph()) == []


@pytest.mark.parametrize(("importer", "imported"), [
    ("initbench.data.loaders", "initbench.train.runner"),  # a layer far above
    ("initbench.data.loaders", "initbench.models.layers"),  # a part of the same layer
    ("initbench.config.values", "initbench.config.identity"),  # inside the config package, upward
    ("initbench.config", "initbench.config.schema"),  # a descriptive package file that imports
])
def test_an_upward_import_is_caught(importer, imported):
    graph = import_graph()
    graph[importer] = graph[importer] | {imported}
    assert upward_imports(graph) == [f"{importer} -> {imported}" + (
        " (a package file that must import nothing)" if importer in DESCRIPTIVE else "")]


def test_the_trainer_dispatches_on_no_task_or_data_type():
    """The loop asks the task; the one isinstance left checks the checkpoint file's format."""
    trainer = (PACKAGE / "train" / "trainer.py").read_text()
    checks = re.findall(r"isinstance\(([^)]*)\)", trainer)
    assert checks == ["saved, dict"]
    assert not re.search(r"\b(ImageData|FolderData|TranslationData|ClassificationTask|TranslationTask)\b", trainer)


# ----------------------------------------------------------------------------- citations
# The tests are left out: they name files that do not exist on purpose (this one) or that a run writes.
CITING_FILES = [*PACKAGE.rglob("*.py"), *(REPO / "configs").rglob("*.yaml"), *(REPO / "scripts").glob("*.py"),
                *(REPO / "docs").glob("*.md"), REPO / "README.md", REPO / "results" / "reported.csv"]
REPOSITORY_PAGES = {path.name for folder in ("docs", ".") for path in (REPO / folder).glob("*.md")}
# `owner/name@commit path` (a repository's file at a commit, docs/sources.md) and web addresses open elsewhere.
EXTERNAL = re.compile(r"[\w.-]+/[\w.-]+@[0-9a-f]{7,40}\s+[\w./{},-]+|https?://\S+")
MARKDOWN_FILE = re.compile(r"[\w./-]*\w\.md\b")


def unopenable_citations(text: str, where: Path) -> list[str]:
    """The .md files a text names that are neither pages of this repository nor a repository's file at a commit."""
    names = MARKDOWN_FILE.findall(EXTERNAL.sub(" ", text))
    return [name for name in names if not (REPO / name).is_file() and not (where.parent / name).is_file()
            and Path(name).name not in REPOSITORY_PAGES]


def test_every_cited_file_is_in_the_repository():
    missing = {str(path.relative_to(REPO)): found for path in CITING_FILES
               if (found := unopenable_citations(path.read_text(encoding="utf-8"), path))}
    assert not missing, f"citations of files a reader cannot open: {missing}"


def test_a_citation_of_a_missing_notes_file_is_caught():
    assert unopenable_citations("Fixup's rule (fixup.md 3.2)", REPO / "initbench" / "x.py") == ["fixup.md"]
    assert unopenable_citations("(hongyi-zhang/Fixup@f3fa449 README.md; docs/sources.md)", REPO / "x.py") == []
