"""hueyd's web dashboard: ``hueyctl --app APP dashboard``, or ``create_app(huey)`` mounted in
a Django, Flask or Starlette project (see docs/dashboard.md).

Needs Starlette (and uvicorn to serve it by itself): ``pip install 'hueyd[dashboard]'``.
Importing this package imports neither, so ``hueyctl`` works without them.
"""


def __getattr__(name):
    if name == 'create_app':
        from hueyd.dashboard.app import create_app
        return create_app
    raise AttributeError('module %r has no attribute %r' % (__name__, name))
