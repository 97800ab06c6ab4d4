"""The shape of the house (docs/contracts.md): the stages on top, the shared modules in one
package, and imports that only point down. Drawn from the source with `ast`, nothing imported."""
import ast
import glob
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, '*.py')))
PACKAGE = sorted('tinystories.' + os.path.basename(p)[:-3]
                 for p in glob.glob(os.path.join(ROOT, 'tinystories', '*.py')) if not p.endswith('__init__.py'))


def source_path(module):
    return os.path.join(ROOT, *module.split('.')) + '.py'


def project_imports(module):
    """The project's modules that `module` imports, anywhere in the file (inside functions too)."""
    with open(source_path(module), encoding='utf-8') as f:
        tree = ast.parse(f.read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f'{node.module}.{a.name}' for a in node.names]
        else:
            continue
        found.update(n for n in names if n in SCRIPTS or n in PACKAGE)
    return found - {module}


def test_the_top_level_shows_the_pipeline():
    assert len(SCRIPTS) <= 12, SCRIPTS
    for stage in ('generate_data', 'prepare', 'model', 'train', 'sample', 'grade', 'diversity',
                  'interpret', 'sweep', 'export'):
        assert stage in SCRIPTS


def test_imports_point_down_and_never_in_a_circle():
    graph = {m: project_imports(m) for m in SCRIPTS + PACKAGE}
    for module, deps in graph.items():
        if module in PACKAGE:  # the package imports no script but the model
            assert deps <= set(PACKAGE) | {'model'}, (module, deps - set(PACKAGE))
        elif module != 'bench':  # a stage imports no other stage (bench.py runs them as commands)
            assert deps <= set(PACKAGE) | {'model'}, (module, deps)
    assert graph['bench'] <= set(PACKAGE) | {'model'}
    assert graph['model'] <= {'tinystories.optim', 'tinystories.speedups'}, graph['model']

    def visit(module, path):  # depth-first: a module met again on its own path closes a cycle
        assert module not in path, ' -> '.join(path + [module])
        for dep in graph[module]:
            visit(dep, path + [module])
    for module in graph:
        visit(module, [])


def test_nothing_edits_sys_path():
    for module in SCRIPTS + PACKAGE:
        with open(source_path(module), encoding='utf-8') as f:
            assert 'sys.path' not in f.read(), module
