"""The dashboard as an ASGI application (Starlette).

Pages are one HTML shell each, filled in the browser by ``static/dashboard.js``
from the JSON under ``api/``, which it polls: the data is put in the page as
text nodes only, so nothing a task carries can become markup, and the Content
Security Policy allows no inline script besides. Every action is a POST that
carries the page's CSRF token in a header, equal to the token in the browser's
cookie: a page of another site can neither read it nor set the header. Kept in
a cookie, not in this process, so a host that runs several processes accepts
the token any of them gave.
"""
import contextlib
import html
import json
import pathlib
import secrets

try:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles
except ImportError as exc:
    raise ImportError("the dashboard runs on Starlette: pip install 'hueyd[dashboard]'") from exc

from hueyd.dashboard import data
from hueyd.dashboard.monitor import Monitor
from hueyd.dashboard.security import Credentials, Guard, csrf_ok
from hueyd.events import ALL_EVENTS

HERE = pathlib.Path(__file__).resolve().parent
CSRF_COOKIE = 'hueyd_csrf'
PAGES = {'overview': 'Overview', 'stats': 'Task statistics', 'queue': 'Queue and schedule',
         'dead-letters': 'Dead letters', 'events': 'Events', 'task': 'Task'}


def create_app(huey, app_path=None, *, auth=None, read_only=False, show_args=False,
               loopback_only=False):
    """The dashboard of ``huey``: an ASGI application to serve or to mount.

    ``auth``: a token, or ``user:password``, every request must carry (HTTP
    Basic, or ``Authorization: Bearer TOKEN``). ``read_only``: no action at
    all (the routes do not exist). ``show_args``: show tasks' arguments.
    ``loopback_only``: answer only requests addressed to this machine by name
    (``hueyctl dashboard`` sets it when it listens on loopback).
    """
    monitor = Monitor(huey)
    shell = (HERE / 'page.html').read_text()
    settings = json.dumps({'readOnly': read_only, 'showArgs': show_args,
                           'statuses': ALL_EVENTS, 'app': app_path})

    def page(name):
        def endpoint(request):
            monitor.start()
            root = request.scope.get('root_path', '')
            token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
            values = {'title': PAGES[name], 'page': name, 'csrf': token, 'settings': settings,
                      'root': root, 'app': app_path or huey.name}
            response = HTMLResponse(shell.format(**{k: html.escape(str(v))
                                                    for k, v in values.items()}))
            response.set_cookie(CSRF_COOKIE, token, path=root or '/', httponly=True,
                                samesite='strict')
            return response
        return endpoint

    def api(read):
        def endpoint(request):
            monitor.start()
            return JSONResponse(read(request))
        return endpoint

    def action(perform):
        async def endpoint(request):
            if not csrf_ok(request.cookies.get(CSRF_COOKIE), request.headers.get('x-csrf-token')):
                return JSONResponse({'error': 'missing or wrong CSRF token'}, status_code=403)
            try:
                body = await request.json()
            except ValueError:
                return JSONResponse({'error': 'the body must be JSON'}, status_code=400)
            if not isinstance(body, dict):
                return JSONResponse({'error': 'the body must be a JSON object'}, status_code=400)
            # In a thread, as Starlette runs the plain (def) endpoints: the storage blocks.
            return JSONResponse({'done': await run_in_threadpool(perform, body)})
        return endpoint

    def events(request):
        query = request.query_params
        after = query.get('after', '0')
        found, newest = monitor.events_after(int(after) if after.isdigit() else 0,
                                             query.get('task'), query.getlist('status'))
        return {'events': found, 'seq': newest, 'events_on': monitor.events_on,
                'events_off_reason': monitor.events_off_reason}

    def revoke(body):
        huey.revoke_by_id(str(body.get('id')))
        return 1

    def restore(body):
        return int(huey.restore_by_id(str(body.get('id'))))

    def chosen(body):
        """The dead letters an action is for: ``{"all": true}`` (None: all), or
        ``{"ids": [...]}``."""
        if body.get('all') is True:
            return None
        ids = body.get('ids')
        return ids if isinstance(ids, list) and all(isinstance(i, str) for i in ids) else []

    routes = [
        Route('/', page('overview')),
        Route('/stats', page('stats')),
        Route('/queue', page('queue')),
        Route('/dead-letters', page('dead-letters')),
        Route('/events', page('events')),
        Route('/task/{task_id}', page('task')),
        Route('/api/status', api(lambda request: data.status(huey, app_path, monitor))),
        Route('/api/stats', api(lambda request: data.stats(huey))),
        Route('/api/messages', api(lambda request: data.messages(huey, show_args))),
        Route('/api/dead-letters', api(lambda request: data.dead_letters(huey))),
        Route('/api/events', api(events)),
        Route('/api/task/{task_id}', api(lambda request: data.task(
            huey, request.path_params['task_id'], monitor, show_args))),
        Mount('/static', StaticFiles(directory=HERE / 'static'), name='static'),
    ]
    if not read_only:
        routes += [
            Route('/api/revoke', action(revoke), methods=['POST']),
            Route('/api/restore', action(restore), methods=['POST']),
            Route('/api/dead-letters/requeue', action(
                lambda body: huey.requeue_dead_letters(chosen(body))), methods=['POST']),
            Route('/api/dead-letters/purge', action(
                lambda body: huey.purge_dead_letters(chosen(body))), methods=['POST']),
        ]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        monitor.start()  # served by itself: events are followed from the start
        yield
        monitor.stop()

    app = Starlette(routes=routes, lifespan=lifespan)
    return Guard(app, Credentials(auth) if auth else None, loopback_only)
