"""``hueyd.contrib.django``: hueyd's first name for ``hueyd.contrib.djhuey``, kept for
projects that use it. Both names are one module's: the same ``HUEY``, the same tasks,
the same management commands."""
from hueyd.contrib.djhuey import *  # noqa: F401,F403
from hueyd.contrib.djhuey import __all__  # noqa: F401
