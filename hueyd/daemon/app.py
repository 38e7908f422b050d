"""Importing the application's Huey instance from its dotted path."""
import importlib
import os
import sys
import traceback


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


def _is_missing(exc, module_name):
    """True when the app module itself (or a package above it) was not found, as
    opposed to a module it imports (``import requestz``) or an error inside it."""
    if not isinstance(exc, ModuleNotFoundError) or exc.name is None:
        return False
    return module_name == exc.name or module_name.startswith(exc.name + '.')


def _user_traceback(exc):
    """The traceback of ``exc`` without the frames of hueyd and of the import machinery."""
    here = os.path.abspath(__file__)
    importlib_dir = os.path.dirname(importlib.__file__)
    report = traceback.TracebackException.from_exception(exc)
    report.stack = traceback.StackSummary.from_list(
        [frame for frame in report.stack
         if frame.filename != here and not frame.filename.startswith(('<frozen', importlib_dir))])
    return ''.join(report.format()).rstrip()


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
        if _is_missing(exc, module_name):
            raise AppImportError('cannot import %r (for %s): %s: %s. %s' % (
                module_name, import_path, type(exc).__name__, exc, _advice(import_path))) from exc
        # The module was found and failed: the user's own traceback says where, so it comes first.
        raise AppImportError('%s\ncannot import %r (for %s): the error above happened inside it; '
                             'fix it, then start hueyd again (or reload it with SIGHUP)' % (
                                 _user_traceback(exc), module_name, import_path)) from exc
    try:
        app = getattr(module, attribute)
    except AttributeError:
        raise AppImportError('module %r has no attribute %r; name the variable that holds the '
                             'Huey instance' % (module_name, attribute)) from None
    if not isinstance(app, Huey):
        raise AppImportError('%s is a %s, not a Huey instance' % (import_path, type(app).__name__))
    return app
