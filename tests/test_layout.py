"""The layout keeps its promises: imports only point down the layers written once below, the training loop asks its
task instead of testing types, and every citation names a file a reader can open."""

from __future__ import annotations

import ast
import importlib.util
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
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    return imports_in(path.read_text(), package)


def imports_in(source: str, package: str) -> set[str]:
    """The initbench modules a module of `package` imports, anywhere in its source: function-level and relative
    imports, and the names given to importlib.import_module or __import__ as a string."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level \
                else node.module
            # `from initbench.config import schema` imports the module initbench.config.schema
            found |= {f"{base}.{alias.name}" if is_module(f"{base}.{alias.name}") else base for alias in node.names}
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in \
                ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            found.add(str(node.args[0].value))
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
        for name in sorted(imported - set(DESCRIPTIVE)):  # a package file that imports nothing is below everything
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


def test_relative_and_importlib_imports_are_seen():
    source = "from ..train.runner import run_job\nimportlib.import_module('initbench.tasks')\n"
    found = imports_in(source, "initbench.data")
    assert found == {"initbench.train.runner", "initbench.tasks"}
    graph = import_graph()
    graph["initbench.data.loaders"] = graph["initbench.data.loaders"] | found
    assert set(upward_imports(graph)) == {"initbench.data.loaders -> initbench.train.runner",
                                          "initbench.data.loaders -> initbench.tasks"}


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
    """The loop asks the task: it names no class of the data or task packages but the `Task` interface, tests no
    type, and the one isinstance left checks the checkpoint file's format."""
    trainer = (PACKAGE / "train" / "trainer.py").read_text()
    assert re.findall(r"isinstance\(([^)]*)\)", trainer) == ["saved, dict"]
    assert not re.search(r"\btype\(|\bhasattr\(|\.name\s*[!=]=|\.task\s*[!=]=", trainer)
    classes = {node.name for folder in ("data", "tasks") for path in (PACKAGE / folder).rglob("*.py")
               for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ClassDef)} - {"Task"}
    assert "ClassificationTask" in classes and "FolderData" in classes
    assert not [name for name in classes if re.search(rf"\b{name}\b", trainer)]


# ----------------------------------------------------------------------------- citations
# The tests are left out: they name files that do not exist on purpose (this one) or that a run writes.
CITING_FILES = [*PACKAGE.rglob("*.py"), *(REPO / "configs").rglob("*.yaml"), *(REPO / "scripts").glob("*.py"),
                *(REPO / "docs").glob("*.md"), REPO / "README.md", REPO / "results" / "reported.csv"]
REPOSITORY_PAGES = {path.name for folder in ("docs", ".") for path in (REPO / folder).glob("*.md")}
# `owner/name@commit path`: a repository's file at a commit that docs/sources.md lists; web addresses open elsewhere.
AT_COMMIT = re.compile(r"([\w.-]+/[\w.-]+)@([0-9a-f]{7,40})\s+`?[\w./{},-]+")
WEB = re.compile(r"https?://\S+")
MARKDOWN_FILE = re.compile(r"[\w./-]*\w\.md\b")
SOURCES = (REPO / "docs" / "sources.md").read_text(encoding="utf-8")


def unopenable_citations(text: str, where: Path) -> list[str]:
    """What a text cites that a reader cannot open: a repository or commit docs/sources.md does not list, a .md path
    that is not in this repository, a bare .md name that is not one of its pages."""
    unlisted = [f"{repo}@{commit}" for repo, commit in AT_COMMIT.findall(text)
                if not re.search(rf"\[{re.escape(repo)}\].*`{commit[:7]}", SOURCES)]
    names = MARKDOWN_FILE.findall(WEB.sub(" ", AT_COMMIT.sub(" ", text)))
    missing = [name for name in names
               if not ((REPO / name).is_file() or (where.parent / name).is_file() if "/" in name
                       else name in REPOSITORY_PAGES)]
    return unlisted + missing


def test_every_cited_file_is_in_the_repository():
    missing = {str(path.relative_to(REPO)): found for path in CITING_FILES
               if (found := unopenable_citations(path.read_text(encoding="utf-8"), path))}
    assert not missing, f"citations of files a reader cannot open: {missing}"


def test_a_citation_of_a_missing_notes_file_is_caught():
    where = REPO / "initbench" / "x.py"
    assert unopenable_citations("Fixup's rule (fixup.md 3.2)", where) == ["fixup.md"]
    assert unopenable_citations("see papers/fixup.md and docs/README.md", where) == ["papers/fixup.md",
                                                                                    "docs/README.md"]
    assert unopenable_citations("(someone/else@0123abc train.py)", where) == ["someone/else@0123abc"]
    assert unopenable_citations("(hongyi-zhang/Fixup@f3fa449 README.md; docs/sources.md)", where) == []
