"""``manage.py create_huey_tables``: huey's command to create an SQL storage's tables."""
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create the tables of settings.HUEY's SQL storage"

    def handle(self, *args, **options):
        from hueyd.contrib.djhuey import HUEY
        # huey's SQL storages (and hueyd's) create their schema in initialize_schema().
        initialize = getattr(HUEY.storage, 'initialize_schema', None)
        if initialize is None:
            raise CommandError('%s keeps no SQL tables to create' % type(HUEY.storage).__name__)
        initialize()
        self.stdout.write('huey tables created.')
