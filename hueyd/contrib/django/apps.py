"""The Django application: ``INSTALLED_APPS = [..., 'hueyd.contrib.django']``."""
from django.apps import AppConfig


class HueydConfig(AppConfig):
    name = 'hueyd.contrib.django'
    label = 'hueyd'
    verbose_name = 'hueyd task queue'
