"""Importing the application's Huey instance from its dotted path."""
import importlib
import os
import sys


class AppImportError(Exception):
    """The import path does not lead to a Huey instance; the message says how to fix it."""


def _advice(import_path):
    package = import_path.split('.')[0]
    return (
        'hueyd looks for modules in its working directory (%s) and on PYTHONPATH (%s). '
        'To fix it: start hueyd from the directory that contains the "%s" package '
        '(WorkingDirectory= under systemd, directory= under supervisord), or set '
        'PYTHONPATH=/path/to/your/project, or correct the import path '
        '(IMPORT_PATH argument, "app =" in the config file, or HUEYD_APP).'
        % (os.getcwd(), os.environ.get('PYTHONPATH') or 'not set', package))


def load_app(import_path):
    """Return the Huey instance named by ``import_path`` (``pkg.module.huey`` or ``pkg.module:huey``)."""
    from hueyd.api import Huey

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, sep, attribute = import_path.replace(':', '.').rpartition('.')
    if not sep or not module_name or not attribute:
        raise AppImportError('%r is not an import path: write the module and the name of the '
                             'Huey instance in it, e.g. blog.main.huey' % import_path)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise AppImportError('cannot import %r (for %s): %s: %s. %s' % (
            module_name, import_path, type(exc).__name__, exc, _advice(import_path))) from exc
    try:
        app = getattr(module, attribute)
    except AttributeError:
        raise AppImportError('module %r has no attribute %r; name the variable that holds the '
                             'Huey instance' % (module_name, attribute)) from None
    if not isinstance(app, Huey):
        raise AppImportError('%s is a %s, not a Huey instance' % (import_path, type(app).__name__))
    return app
