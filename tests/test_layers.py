"""The package's layers: imports point down (or sideways within a layer), never up, and never in a circle.

The layers, bottom to top, are the ones the tree shows (``../shared/docs/LAYOUT.md``): a module may import only
from its own layer and the layers below it. A new top-level module or package must be placed in a layer here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / 'nni_base'

#: bottom to top; entries of one tuple are one layer
LAYERS = (
    ('errors', 'io', 'resources', 'hparams'),
    ('data',),
    ('tasks',),
    ('space',),
    ('config', 'config_groups'),
    ('prior',),
    ('search',),
    ('hardware',),
    ('database',),
    ('evaluator', 'callbacks', 'runs'),
    ('strategy', 'zero_shot_strategies'),
    ('api', 'fewshot', 'viz'),
    ('cli',),
    ('__init__',),
)
RANK = {name: rank for rank, layer in enumerate(LAYERS) for name in layer}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix('').parts)
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def imports_of(path: Path) -> set[str]:
    """The nni_base modules ``path`` imports at run time (imports under ``if TYPE_CHECKING:`` included: a cycle
    that only type checkers see is still a cycle a reader must follow)."""
    name = module_name(path)
    package = name if path.name == '__init__.py' else name.rsplit('.', 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')[: len(package.split('.')) - node.level + 1]
                target = '.'.join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ''
            if target.startswith('nni_base'):
                # `from . import x` may name a submodule: count the submodule when it is one
                for alias in node.names:
                    sub = f'{target}.{alias.name}'
                    found.add(sub if _is_module(sub) else target)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith('nni_base')}
    found.discard(name)
    return found


def _is_module(name: str) -> bool:
    path = PACKAGE.parent / name.replace('.', '/')
    return path.with_suffix('.py').is_file() or (path / '__init__.py').is_file()


def layer_of(name: str) -> str:
    parts = name.split('.')
    return parts[1] if len(parts) > 1 else '__init__'


GRAPH = {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob('*.py'))}


def test_every_top_level_module_has_a_layer():
    assert sorted({layer_of(m) for m in GRAPH} - set(RANK)) == []


def test_imports_never_point_up_a_layer():
    upward = [
        f'{m} imports {t}'
        for m, targets in GRAPH.items()
        for t in targets
        if t in GRAPH and RANK[layer_of(t)] > RANK[layer_of(m)] and not _deprecated_alias(m)
    ]
    assert upward == []


def _deprecated_alias(name: str) -> bool:
    """The old names kept for old imports (they point at the new place, wherever it is)."""
    path = PACKAGE.parent / name.replace('.', '/')
    path = path / '__init__.py' if path.is_dir() else path.with_suffix('.py')
    return 'keeps old imports working' in path.read_text()


def _cycle() -> list[str] | None:
    # A package's __init__ re-exporting its own submodules is not an edge a reader follows back: leave those out.
    edges = {m: {t for t in ts if t in GRAPH and not t.startswith(m + '.')} for m, ts in GRAPH.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_there_is_no_import_cycle():
    assert _cycle() is None


@pytest.mark.parametrize('name', ['nni_base.search', 'nni_base.space', 'nni_base.tasks', 'nni_base.data'])
def test_the_lower_layers_never_import_the_database_or_the_strategy(name):
    inside = [m for m in GRAPH if m == name or m.startswith(name + '.')]
    upward = [(m, t) for m in inside for t in GRAPH[m] if layer_of(t) in ('database', 'strategy', 'api', 'cli')]
    assert [(m, t) for m, t in upward if not _deprecated_alias(m)] == []


def test_no_module_imports_its_own_package():
    # a submodule importing its package's __init__ (which imports the submodule) is a cycle the DFS above cannot
    # see once package-to-submodule edges are left out
    own = [(m, t) for m, targets in GRAPH.items() for t in targets if m.startswith(t + '.') and t != 'nni_base']
    assert own == []


def test_the_space_imports_nothing_else_of_the_package():
    inside = [m for m in GRAPH if m.startswith('nni_base.space')]
    assert [(m, t) for m in inside for t in GRAPH[m] if layer_of(t) != 'space'] == []
