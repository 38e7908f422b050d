"""``manage.py run_hueyd`` for projects that install ``hueyd.contrib.django``."""
from hueyd.contrib.djhuey.management.commands.run_hueyd import Command  # noqa: F401
