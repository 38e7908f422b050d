"""Settings of the test project. Files go to $DJANGO_TEST_DIR (a test's tmp_path).

DJANGO_DEBUG=1 turns DEBUG on (and with it huey's immediate mode);
DJANGO_HUEY_INSTANCE=1 makes settings.HUEY an instance instead of a dict;
DJANGO_HUEY_CLASS and DJANGO_HUEY_WORKERS replace those two settings (to test errors).
"""
import os

BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATE_DIR = os.environ.get('DJANGO_TEST_DIR', BASE_DIR)

SECRET_KEY = 'only-for-tests'
DEBUG = os.environ.get('DJANGO_DEBUG') == '1'
ALLOWED_HOSTS = ['*']
INSTALLED_APPS = ['hueyd.contrib.django', 'shop']
DATABASES = {'default': {'ENGINE': 'django.db.backends.sqlite3',
                         'NAME': os.path.join(STATE_DIR, 'db.sqlite3')}}
DEFAULT_AUTO_FIELD = 'django.db.models.AutoField'
USE_TZ = True

HUEY = {
    'huey_class': 'hueyd.SqliteHuey',
    'name': 'shop',
    'filename': os.path.join(STATE_DIR, 'huey.db'),
    'consumer': {'workers': 2, 'initial_delay': 0.01, 'max_delay': 0.1, 'graceful_timeout': 5},
}

if 'DJANGO_HUEY_CLASS' in os.environ:
    HUEY['huey_class'] = os.environ['DJANGO_HUEY_CLASS']
if 'DJANGO_HUEY_WORKERS' in os.environ:
    HUEY['consumer']['workers'] = os.environ['DJANGO_HUEY_WORKERS']
if os.environ.get('DJANGO_HUEY_INSTANCE') == '1':
    from hueyd import SqliteHuey

    HUEY = SqliteHuey('shop-instance', filename=os.path.join(STATE_DIR, 'huey-instance.db'),
                      immediate=DEBUG)
