"""Enqueue shop.jobs' Django tasks as a view would, wait until they finish, print JSON."""
import datetime
import json
import time

from django.core.management.base import BaseCommand
from django.utils import timezone

from hueyd.contrib.djhuey import HUEY
from shop.models import Order


class Command(BaseCommand):
    def add_arguments(self, parser):
        parser.add_argument('--timeout', type=float, default=30)
        # Immediate mode never runs a task due later: it has no scheduler.
        parser.add_argument('--no-later', action='store_true')

    def handle(self, timeout, no_later, **options):
        from shop.jobs import attempt, fail, multiply
        later = timezone.now() + datetime.timedelta(seconds=1)
        tasks = {'multiply': multiply, 'fail': fail, 'attempt': attempt,
                 'later': multiply.using(run_after=later)}
        results = {'multiply': multiply.enqueue(6, b=7), 'fail': fail.enqueue(),
                   'attempt': attempt.enqueue('tea')}
        if not no_later:
            results['later'] = tasks['later'].enqueue(2, 3)
        first = {name: result.status for name, result in results.items()}
        deadline = time.monotonic() + timeout
        while not all(result.is_finished for result in results.values()):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
            for result in results.values():
                result.refresh()
        report = {'immediate': HUEY.immediate, 'first': first,
                  'orders': list(Order.objects.values_list('item', flat=True))}
        for name, result in results.items():
            report[name] = {
                'status': result.status, 'attempts': result.attempts,
                'value': result.return_value if result.status == 'SUCCESSFUL' else None,
                'errors': [error.exception_class.__name__ for error in result.errors],
                'started_after_eta': bool(result.started_at and result.started_at >= later),
                'fetched': tasks[name].get_result(result.id).status}
        self.stdout.write(json.dumps(report))
