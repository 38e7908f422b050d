"""``manage.py run_huey`` for projects that install ``hueyd.contrib.django``."""
from hueyd.contrib.djhuey.management.commands.run_huey import Command  # noqa: F401
