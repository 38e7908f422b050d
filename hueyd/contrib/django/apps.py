"""The Django application under hueyd's first name: ``INSTALLED_APPS = [..., 'hueyd.contrib.django']``
(``'hueyd.contrib.djhuey'``, huey's name, is the same application)."""
from django.apps import AppConfig


class HueydConfig(AppConfig):
    name = 'hueyd.contrib.django'
    label = 'hueyd'
    verbose_name = 'hueyd task queue'
