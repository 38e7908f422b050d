"""Tasks of Django's task framework (django.tasks, or the django-tasks backport), which
settings.TASKS sends to hueyd.contrib.djhuey.tasks_backend.HueyBackend."""
import os

try:
    from django.tasks import task
except ImportError:
    from django_tasks import task

from shop.models import Order


@task
def multiply(a, b):
    return {'product': a * b, 'pid': os.getpid()}


@task
def fail():
    raise ValueError('kapow')


@task(takes_context=True)
def attempt(context, item):
    Order.objects.create(item=item)
    return context.attempt
