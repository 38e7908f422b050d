from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class DashboardConfig(AppConfig):
    name = 'hueyd.contrib.djhuey.dashboard'
    label = 'hueyd_dashboard'  # not 'dashboard': a project may have an app of that name
    verbose_name = 'Task queue'

    def ready(self):
        # The dashboard lists a message only when it knows the message's task: import every
        # app's tasks module, as run_hueyd does.
        autodiscover_modules('tasks')
