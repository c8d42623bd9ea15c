"""nst_jax's modules import each other without a cycle (issue 24, item 4).

Every import counts, at the top of a module or inside a function: a cycle
hidden in a function is still one module needing the other both ways.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / 'nst_jax'


def _module_name(path: Path, package: Path) -> str:
  parts = path.relative_to(package.parent).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
  """{module: the package's modules it imports}, from the source (no import)."""
  paths = {_module_name(p, package): p for p in package.rglob('*.py')}
  graph = {}
  for name, path in paths.items():
    is_package = path.name == '__init__.py'
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        imported.update(alias.name for alias in node.names)
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ''
        if node.level:  # relative: from . import x, from .a import b
          anchor = name.split('.')[:len(name.split('.')) + is_package - node.level]
          base = '.'.join(anchor + ([base] if base else []))
        imported.add(base)
        imported.update(f'{base}.{alias.name}' for alias in node.names)
    # `from nst_jax import losses` names a module; `from x import f` may not.
    graph[name] = {m for m in imported if m in paths and m != name
                   and not name.startswith(m + '.')}
  return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
  """One cycle [a, b, ..., a] of `graph`, or [] if it has none."""
  state, stack = {}, []

  def visit(node):
    state[node] = 'open'
    stack.append(node)
    for nxt in sorted(graph[node]):
      if state.get(nxt) == 'open':
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state and (cycle := visit(nxt)):
        return cycle
    state[node] = 'done'
    stack.pop()
    return []

  for node in sorted(graph):
    if node not in state and (cycle := visit(node)):
      return cycle
  return []


def test_no_import_cycle():
  graph = import_graph()
  assert 'nst_jax.engine' in graph and graph['nst_jax.engine']
  assert find_cycle(graph) == [], ' -> '.join(find_cycle(graph))


@pytest.mark.parametrize('graph,cycle', [
    ({'a': {'b'}, 'b': {'c'}, 'c': set()}, []),
    ({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}, ['a', 'b', 'c', 'a']),
    ({'a': {'b', 'c'}, 'b': {'c'}, 'c': set(), 'd': {'d'}}, ['d', 'd']),
])
def test_find_cycle(graph, cycle):
  assert find_cycle(graph) == cycle


def test_graph_reads_function_level_and_relative_imports(tmp_path):
  package = tmp_path / 'nst_jax'
  (package / 'sub').mkdir(parents=True)
  (package / '__init__.py').write_text('')
  (package / 'a.py').write_text('def f():\n  from nst_jax import b\n')
  (package / 'b.py').write_text('from nst_jax.sub import c\n')
  (package / 'sub' / '__init__.py').write_text('from . import c\n')
  (package / 'sub' / 'c.py').write_text('from .. import a\nimport nst_jax.b\n')
  graph = import_graph(package)
  assert graph == {'nst_jax': set(), 'nst_jax.a': {'nst_jax.b'},
                   'nst_jax.b': {'nst_jax.sub', 'nst_jax.sub.c'},
                   'nst_jax.sub': {'nst_jax.sub.c'},
                   # Its own package is no edge: `from nst_jax.sub import
                   # sibling` is how a package's modules import each other.
                   'nst_jax.sub.c': {'nst_jax.a', 'nst_jax.b'}}
  assert find_cycle(graph) == ['nst_jax.a', 'nst_jax.b', 'nst_jax.sub',
                               'nst_jax.sub.c', 'nst_jax.a']
