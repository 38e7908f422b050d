"""Enqueue the shop's tasks as a view would, wait for their results, print them as JSON."""
import json

from django.core.management.base import BaseCommand
from django.db import transaction

from hueyd.contrib.django import HUEY
from shop.models import Order


class Command(BaseCommand):
    def add_arguments(self, parser):
        parser.add_argument('--timeout', type=float, default=30)

    def handle(self, timeout, **options):
        from shop.tasks import add, confirm, create_order, pay
        total = add(1, 2)
        orders = [create_order('book'), create_order('pen')]
        created = [result.get(blocking=True, timeout=timeout) for result in orders]
        paid = pay(created[0]['id']).get(blocking=True, timeout=timeout)
        with transaction.atomic():
            Order.objects.create(item='committed')
            confirmed = confirm('committed')  # not enqueued before the commit
            before_commit = confirmed.get()
        rolled_back = None
        try:
            with transaction.atomic():
                rolled_back = confirm('never')
                raise RuntimeError('roll back')
        except RuntimeError:
            pass
        self.stdout.write(json.dumps({
            'queue': HUEY.name,
            'immediate': HUEY.immediate,
            'add': total.get(blocking=True, timeout=timeout),
            'orders': created,
            'paid': paid,
            'on_commit': [before_commit, confirmed.get(blocking=True, timeout=timeout),
                          rolled_back.get()],
            'in_database': sorted(Order.objects.values_list('item', 'paid')),
            'tasks': HUEY.registered_tasks,
        }))
