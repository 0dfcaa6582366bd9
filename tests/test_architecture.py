"""The import graph runs one way: core ← transforms ← engines ← command line / bundles / app ← benchmark.

Every Python file of the package, the bundles' scripts, the MONAI Label app and the benchmark is parsed (not imported);
each import of a project module must point to the same or a lower layer, and the folders must not import each other
in a cycle. The bundles' JSON configs count as bundle code: they may name anything but the benchmark.
"""

import ast
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: layer of a source folder (relative to the repository), most specific first
FOLDER_LAYERS = [
    ("core", 0, "core"),
    ("labelfree/sample", 0, "core"),
    ("transforms", 1, "transforms"),
    ("labelfree/engines", 2, "engines"),
    ("labelfree", 3, "apps"),
    ("bundles", 3, "apps"),
    ("apps", 3, "apps"),
    ("bench", 4, "benchmark"),
]
#: layer of an imported module name, most specific first
MODULE_LAYERS = [
    ("labelfree.core", 0),
    ("labelfree.sample", 0),
    ("labelfree.transforms", 1),
    ("labelfree.engines", 2),
    ("labelfree", 3),
    ("scripts", 3),
    ("lib", 3),
    ("bench", 4),
]


def _folder_layer(path: Path) -> tuple[int, str]:
    rel = path.relative_to(REPO).as_posix()
    for prefix, layer, name in FOLDER_LAYERS:
        if rel == prefix or rel.startswith(prefix + "/"):
            return layer, name
    raise AssertionError(f"{rel} is in no layer: add its folder to FOLDER_LAYERS")


def _module_layer(name: str) -> int | None:
    if name == "labelfree":  # the bare package: its __init__ imports nothing
        return 0
    for prefix, layer in MODULE_LAYERS:
        if name == prefix or name.startswith(prefix + "."):
            return layer
    return None  # a third-party or standard-library module


def _sources() -> list[Path]:
    roots = [REPO / d for d in ("core", "labelfree", "transforms", "apps", "bench")]
    roots += list(REPO.glob("bundles/*/scripts"))
    return sorted(p for root in roots for p in root.rglob("*.py") if "site" not in p.relative_to(REPO).parts)


def _imports(path: Path, text: str | None = None) -> list[str]:
    tree = ast.parse(path.read_text() if text is None else text, filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names if node.module == "labelfree"]
    return names


def _upward(path: Path, text: str | None = None) -> list[str]:
    layer, _ = _folder_layer(path)
    return [
        f"{path.relative_to(REPO)} (layer {layer}) imports {name} (layer {_module_layer(name)})"
        for name in _imports(path, text)
        if (_module_layer(name) or 0) > layer
    ]


def _module_folder(name: str) -> str | None:
    """The top-level source folder a project module lives in (``labelfree.core`` is installed from ``core/``,
    ``labelfree.transforms`` from ``transforms/``)."""
    parts = name.split(".")
    if parts[0] != "labelfree":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in ("core", "transforms") else "labelfree"


def test_no_upward_import():
    upward = [line for path in _sources() for line in _upward(path)]
    assert not upward, "\n".join(upward)


def test_folders_import_each_other_in_no_cycle():
    graph: dict[str, set[str]] = {}
    for path in _sources():
        folder = path.relative_to(REPO).parts[0]  # top-level folders, as a reader of the repository sees them
        for name in _imports(path):
            target = _module_folder(name)
            if target is not None and target != folder:
                graph.setdefault(folder, set()).add(target)
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                pytest.fail("import cycle between folders: " + " -> ".join([*trail, node, nxt]))
            if not state.get(nxt):
                visit(nxt, [*trail, node])
        state[node] = 2

    for node in sorted(graph):
        if not state.get(node):
            visit(node, [])


@pytest.mark.parametrize(
    "config", sorted(REPO.glob("bundles/*/configs/*.json")), ids=lambda p: f"{p.parent.parent.name}/{p.name}"
)
def test_bundle_configs_name_no_benchmark_code(config):
    text = json.dumps(json.loads(config.read_text()))
    assert not re.search(r"\bbench\.", text), f"{config} refers to the benchmark harness"


def test_the_checker_sees_an_upward_import():
    """The checker itself: a core module importing a transform, or a transform importing the engines, is reported."""
    core = REPO / "core" / "probe.py"
    assert _upward(core, "from labelfree.transforms.stain import has_tissue\n")
    assert _upward(REPO / "transforms" / "probe.py", "import labelfree.engines.runs\n")
    assert _upward(REPO / "labelfree" / "probe.py", "from bench.harness import compare\n")
    assert not _upward(REPO / "transforms" / "probe.py", "from labelfree.core.imageio import load_rgb\n")
