"""Settings of a small Django shop whose background jobs run on huey's API.

The queue is a SQLite file (``SHOP_QUEUE_DB``, default ``queue.db`` beside this
project); ``SHOP_IMMEDIATE=1`` runs every task inline instead, with no consumer.
"""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = 'example-only-not-secret'
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ['hueyd.contrib.djhuey', 'orders']
DATABASES = {'default': {'ENGINE': 'django.db.backends.sqlite3', 'NAME': ':memory:'}}

HUEY = {
    'huey_class': 'hueyd.SqliteHuey',
    'name': 'shop',
    'filename': os.environ.get('SHOP_QUEUE_DB', str(BASE_DIR / 'queue.db')),
    'immediate': os.environ.get('SHOP_IMMEDIATE') == '1',
    'utc': True,
    'consumer': {'workers': 2, 'worker_type': 'thread'},
}
