"""``manage.py shop_demo``: place an order, run a periodic task, meet a held lock."""
import datetime

from django.core.management.base import BaseCommand

from hueyd.contrib.djhuey import HUEY
from hueyd.exceptions import TaskException
from orders.tasks import nightly_report, place_order, ship


class Command(BaseCommand):
    help = 'Run the shop through its background jobs and print what happened.'

    def handle(self, *args, **options):
        amount, steps = place_order(7, [('apple', 2), ('pear', 1), ('plum', 5)])
        self.stdout.write('order 7 total: %s' % amount)
        self.stdout.write('fulfilment: %s' % steps.get(blocking=True, timeout=30)[-1])

        for when in (datetime.datetime(2026, 1, 5, 3, 0), datetime.datetime(2026, 1, 5, 3, 1)):
            due = [task.name.split('.')[-1] for task in HUEY.read_periodic(when)]
            self.stdout.write('periodic tasks due at %s: %s' % (when, due))
        self.stdout.write('nightly report: %s'
                          % nightly_report.call_local())  # periodic results are not kept

        with HUEY.lock_task('shipping-desk'):  # someone else is at the desk
            blocked = ship('order 8')
            try:
                blocked.get(blocking=True, timeout=30)
            except TaskException as exc:
                self.stdout.write('order 8 while the desk was taken: %s'
                                  % exc.metadata['error'].split('(')[0])
        self.stdout.write('order 8 once free: %s'
                          % ship('order 8').get(blocking=True, timeout=30))
