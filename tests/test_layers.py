"""Imports only point down the layers of DESIGN.md (lazy imports included)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LAYERS = {
    "mixtailor_game": 0,
    "mixtailor_game._checks": 1,
    "mixtailor_game.rules": 1,
    "mixtailor_game.theory": 1,
    "mixtailor_game.data": 1,
    "mixtailor_game.models": 1,
    "solvers": 2,
    "mixtailor_game.attacks": 3,
    "mixtailor_game.train": 4,
    "mixtailor_game.game": 4,
    "mixtailor_game.verify": 4,
    "mixtailor_game.cli": 4,
    "mixtailor_game.__main__": 4,
}


def layer_of(module: str) -> int | None:
    best = None
    for prefix, layer in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, layer)
    return None if best is None else best[1]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path, own: str):
    tree = ast.parse(path.read_text(), filename=str(path))
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            yield mod
            for alias in node.names:
                yield f"{mod}.{alias.name}"


FILES = sorted(
    p for pkg in ("mixtailor_game", "solvers") for p in (ROOT / pkg).rglob("*.py")
)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path):
    own = module_name(path)
    own_layer = layer_of(own)
    assert own_layer is not None, f"{own} has no layer in tests/test_layers.py"
    for mod in imported_modules(path, own):
        target = layer_of(mod)
        if target is not None and mod != "mixtailor_game":
            assert target <= own_layer, f"{own} (layer {own_layer}) imports {mod} (layer {target})"


def test_layer_map_catches_an_upward_import():
    # The checker itself can fail: a rules module importing the trainer is caught.
    assert layer_of("mixtailor_game.train.trainer") > layer_of("mixtailor_game.rules.krum")
    assert layer_of("mixtailor_game.attacks.adaptive") > layer_of("solvers.problems")
