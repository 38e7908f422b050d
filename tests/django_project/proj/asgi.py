"""Django under an ASGI server (uvicorn proj.asgi:application), with hueyd's dashboard also
mounted beside it at /queue, guarded by the token in $QUEUE_DASHBOARD_AUTH, as
docs/dashboard.md shows. (With DJANGO_DASHBOARD=1 it is in the admin too, behind Django's
login.)"""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'proj.settings')
django_app = get_asgi_application()  # first: it sets Django up

from starlette.applications import Starlette  # noqa: E402
from starlette.routing import Mount  # noqa: E402

from hueyd.contrib.djhuey import HUEY  # noqa: E402
from hueyd.dashboard import create_app  # noqa: E402

application = Starlette(routes=[
    Mount('/queue', app=create_app(HUEY, auth=os.environ['QUEUE_DASHBOARD_AUTH'])),
    Mount('/', app=django_app),
])
