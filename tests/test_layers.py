"""The layers of docs/architecture.md, checked on the source: imports point down only,
and no module reads another object's private names."""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'hueyd'

# Top to bottom; a module may import from its own layer and the layers below it.
LAYERS = ('entry', 'daemon', 'library', 'storage', 'foundation')
FOUNDATION = {'hueyd.constants', 'hueyd.exceptions', 'hueyd.times', 'hueyd.serializer'}


def layer_of(module):
    parts = module.split('.')
    if module in FOUNDATION:
        return 'foundation'
    if len(parts) > 1 and parts[1] in ('cli', 'contrib', 'dashboard', '__main__'):
        return 'entry'
    if len(parts) > 1 and parts[1] in ('daemon', 'storage'):
        return parts[1]
    return 'library'


def modules():
    for path in sorted(PACKAGE.rglob('*.py')):
        parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
        name = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)
        yield name, ast.parse(path.read_text(), str(path))


def imported(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('hueyd'):
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith('hueyd'):
                    yield node.lineno, alias.name


MODULES = list(modules())


@pytest.mark.parametrize('name,tree', MODULES, ids=[name for name, _ in MODULES])
def test_imports_point_down(name, tree):
    mine = LAYERS.index(layer_of(name))
    upward = ['line %d: %s (%s)' % (line, target, layer_of(target))
              for line, target in imported(tree)
              if LAYERS.index(layer_of(target)) < mine]
    assert upward == [], '%s (%s) imports from a layer above it' % (name, layer_of(name))


def test_no_module_reads_private_names_of_other_objects():
    # ``self._x`` and ``cls._x`` are a class's own; ``os._exit`` is the documented way
    # for a forked child to exit without running the parent's cleanup.
    allowed = {'os._exit'}
    found = []
    for name, tree in modules():
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith('_')
                    and not node.attr.startswith('__')
                    and not (isinstance(node.value, ast.Name) and node.value.id in ('self', 'cls'))
                    and ast.unparse(node) not in allowed):
                found.append('%s:%d %s' % (name, node.lineno, ast.unparse(node)))
    assert found == []
