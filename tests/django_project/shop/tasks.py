"""Found by run_hueyd's autodiscovery, as every installed app's tasks module."""
import os

from django.conf import settings
from django.db import connection

from hueyd import crontab
from hueyd.contrib.django import (HUEY, db_periodic_task, db_task, on_commit_task,
                                  periodic_task, task)
from shop.models import Order


@task()
def add(a, b):
    return a + b


@db_task()
def create_order(item):
    """Reports whether db_task closed the connection the pre-execute hook opened."""
    closed_before = connection.connection is None
    order = Order.objects.create(item=item)
    return {'id': order.pk, 'closed_before': closed_before, 'pid': os.getpid()}


@db_task()
def pay(order_id):
    return Order.objects.filter(pk=order_id).update(paid=True)


@on_commit_task()
def confirm(item):
    """Enqueued only when the transaction that called it commits."""
    return Order.objects.filter(item=item).count()


@db_periodic_task(crontab(minute='0', hour='3'))
def nightly_cleanup():
    Order.objects.filter(paid=True).delete()


@periodic_task(crontab(minute='*/5'))
def every_five_minutes():
    pass


@HUEY.pre_execute()
def open_a_connection(task):
    if task.name == 'create_order' and not HUEY.immediate:
        connection.ensure_connection()  # db_task must close it before the task runs


@HUEY.post_execute()
def note_the_connection(task, value, exc):
    if task.name == 'create_order' and not HUEY.immediate:
        with open(os.path.join(settings.STATE_DIR, 'connections.log'), 'a') as f:
            f.write('closed after: %s\n' % (connection.connection is None))
