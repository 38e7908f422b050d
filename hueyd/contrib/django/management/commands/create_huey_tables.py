"""``manage.py create_huey_tables`` for projects that install ``hueyd.contrib.django``."""
from hueyd.contrib.djhuey.management.commands.create_huey_tables import Command  # noqa: F401
