"""The package's import structure: no import cycles between eleaf's modules (module-level
or inside functions), and the data layer (eleaf.datasets) never imports the training layer
(eleaf.train) above it."""
import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: cycles still being removed elsewhere (each a sorted tuple of module names); empty when done
KNOWN_CYCLES = set()


def _modules():
    """{module name: (path, is package)} of eleaf and eleaf.kernels (installed from kernels/)."""
    mods = {}
    for base, pkgdir in (('eleaf', 'eleaf'), ('eleaf.kernels', 'kernels')):
        top = os.path.join(ROOT, pkgdir)
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if d != '__pycache__']
            for f in filenames:
                if f.endswith('.py'):
                    rel = os.path.relpath(os.path.join(dirpath, f), top)[:-3].split(os.sep)
                    if rel[-1] == '__init__':
                        rel = rel[:-1]
                    mods['.'.join([base] + rel)] = (os.path.join(dirpath, f), f == '__init__.py')
    return mods


def _is_main_guard(node):
    """``if __name__ == '__main__':``, whose body runs only when the module is a script (then
    it is ``__main__``, not a node of the import graph)."""
    t = node.test if isinstance(node, ast.If) else None
    return (isinstance(t, ast.Compare) and isinstance(t.left, ast.Name)
            and t.left.id == '__name__' and len(t.comparators) == 1
            and isinstance(t.comparators[0], ast.Constant) and t.comparators[0].value == '__main__')


def _imported_nodes(tree):
    """Every node of ``tree`` except those inside a top-level ``__main__`` guard."""
    for top in tree.body:
        if not _is_main_guard(top):
            yield from ast.walk(top)


def import_graph():
    """{module: set of eleaf modules it imports anywhere in its source}."""
    mods = _modules()
    graph = {}
    for name, (path, is_pkg) in mods.items():
        with open(path, encoding='utf-8') as fh:
            tree = ast.parse(fh.read())
        pkg = name if is_pkg else name.rpartition('.')[0]
        out = set()
        for node in _imported_nodes(tree):
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = pkg.split('.')
                    mod = '.'.join(parts[:len(parts) - node.level + 1])
                    mod += '.' + node.module if node.module else ''
                else:
                    mod = node.module or ''
                for a in node.names:  # `from pkg import submodule` imports the submodule
                    out.add(mod + '.' + a.name if mod + '.' + a.name in mods else mod)
        graph[name] = {m for m in out if m in mods and m != name}
    return graph


def cycles(graph):
    """The strongly connected components of more than one module, as sorted tuples."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(tuple(sorted(comp)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_cycles():
    graph = {'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}, 'e': set()}
    assert cycles(graph) == [('a', 'b', 'c')]
    assert cycles({'a': {'b'}, 'b': set()}) == []


def test_main_guard_is_not_an_import():
    tree = ast.parse("import a\nif __name__ == '__main__':\n    import b\nif x:\n    import c\n")
    names = {a.name for n in _imported_nodes(tree) if isinstance(n, ast.Import) for a in n.names}
    assert names == {'a', 'c'}


def test_compare_script_arguments():
    from eleaf.train.compare import compare_argv
    assert compare_argv(['--frontends', 'Leaf,Mel', '--epochs', '1']) == [
        '--compare-frontends', 'Leaf,Mel', '--epochs', '1']
    assert compare_argv(['--epochs', '1']) == ['--epochs', '1', '--compare-frontends',
                                               'EfficientLeaf,Mel']


def test_import_graph_sees_relative_and_lazy_imports():
    graph = import_graph()
    # module level, relative: eleaf/train/cli.py `from . import data as data_lib`
    assert 'eleaf.train.data' in graph['eleaf.train.cli']
    # inside a function: eleaf/train/data.py build_datasets `from ..datasets.registry import`
    assert 'eleaf.datasets.registry' in graph['eleaf.train.data']


def test_no_import_cycles():
    new = [c for c in cycles(import_graph()) if c not in KNOWN_CYCLES]
    assert new == [], 'import cycles: %s' % new


def test_data_layer_does_not_import_training_layer():
    graph = import_graph()
    bad = {m: sorted(d for d in deps if d.startswith('eleaf.train'))
           for m, deps in graph.items() if m.startswith('eleaf.datasets')}
    assert {m: d for m, d in bad.items() if d} == {}


def test_datasets_import_without_train_at_run_time():
    code = ('import sys, eleaf.datasets.registry, eleaf.datasets.prepare; '
            'print(sorted(m for m in sys.modules if m.startswith("eleaf.train")))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip() == '[]'


def test_data_error_is_one_class():
    from eleaf.datasets.errors import DataError
    from eleaf.train import data
    assert data.DataError is DataError and issubclass(DataError, ValueError)
    with pytest.raises(DataError, match='unknown data set'):
        data.resolve_dataset_name('NOSUCH')
