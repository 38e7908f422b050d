"""The admin's entry: hueyd's dashboard (an ASGI app) answering Django requests under it.

The admin's own guard comes first (``admin_site.admin_view``): anonymous visitors are sent
to its login page and only active staff users pass; then the Dashboard model's permissions:
``view`` to look, ``change`` to act; superusers have both. ``settings.HUEYD_DASHBOARD`` holds
``create_app``'s options, e.g. ``{'show_args': True}`` or ``{'read_only': True}``.
"""
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt

from hueyd.contrib.djhuey import HUEY
from hueyd.contrib.djhuey.dashboard.models import Dashboard
from hueyd.dashboard import create_app


@admin.register(Dashboard)
class DashboardAdmin(admin.ModelAdmin):
    def __init__(self, model, admin_site):
        super().__init__(model, admin_site)
        self.app = create_app(HUEY, **getattr(settings, 'HUEYD_DASHBOARD', {}))

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        # csrf_exempt: the dashboard checks its own token on every action (a header Django's
        # CSRF middleware does not know), so Django's check would refuse them all.
        view = self.admin_site.admin_view(csrf_exempt(self.dashboard))
        changelist = '%s_%s_changelist' % (self.opts.app_label, self.opts.model_name)
        return [path('', view, {'rest': ''}, name=changelist),
                re_path(r'^(?P<rest>.+)$', view)]

    def dashboard(self, request, rest):
        acting = request.method not in ('GET', 'HEAD')
        if not (self.has_change_permission(request) if acting
                else self.has_view_permission(request)):
            raise PermissionDenied
        # A sync view, so the admin's guard wraps it under WSGI and ASGI alike.
        return async_to_sync(answer)(self.app, request, rest)


async def answer(app, request, rest):
    """Django's ``request`` answered by the ASGI ``app``, mounted where ``rest`` begins in
    the path. The body is read whole and the response kept whole: the dashboard streams
    nothing."""
    scope = {
        'type': 'http',
        # 2.4: the app does not wait for the client to leave while it answers.
        'asgi': {'version': '3.0', 'spec_version': '2.4'},
        'http_version': '1.1',
        'method': request.method,
        'scheme': request.scheme,
        'path': request.path,
        'root_path': request.path[:len(request.path) - len(rest)].rstrip('/'),
        'query_string': request.META.get('QUERY_STRING', '').encode('latin-1'),
        'headers': [(name.lower().encode('latin-1'), value.encode('latin-1'))
                    for name, value in request.headers.items()],
    }
    body = [request.body]

    async def receive():
        if body:
            return {'type': 'http.request', 'body': body.pop(), 'more_body': False}
        return {'type': 'http.disconnect'}

    start, chunks = {}, []

    async def send(message):
        if message['type'] == 'http.response.start':
            start.update(message)
        else:
            chunks.append(message.get('body', b''))

    await app(scope, receive, send)
    response = HttpResponse(b''.join(chunks), status=start['status'])
    for name, value in start.get('headers', []):
        name, value = name.decode('latin-1'), value.decode('latin-1')
        if name.lower() == 'set-cookie':
            response.cookies.load(value)
        else:
            response[name] = value
    return response
