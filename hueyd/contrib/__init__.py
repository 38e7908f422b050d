"""Integrations with web frameworks: ``hueyd.contrib.djhuey`` (Django, huey's name; also
``hueyd.contrib.django``)."""
