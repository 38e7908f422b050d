"""Settings of the test project. Files go to $DJANGO_TEST_DIR (a test's tmp_path).

DJANGO_DEBUG=1 turns DEBUG on (and with it huey's immediate mode);
DJANGO_HUEY_INSTANCE=1 makes settings.HUEY an instance instead of a dict;
DJANGO_HUEY_CLASS and DJANGO_HUEY_WORKERS replace those two settings (to test errors);
DJANGO_HUEY_APP=djhuey installs the app under huey's name, hueyd.contrib.djhuey;
DJANGO_DASHBOARD=1 adds Django's admin and hueyd's dashboard in it (tests/test_django_dashboard.py).
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

# huey's module name for the app (tests/test_djhuey.py); hueyd.contrib.django is the same app.
if os.environ.get('DJANGO_HUEY_APP') == 'djhuey':
    INSTALLED_APPS = ['hueyd.contrib.djhuey', 'shop']
# Django's task framework (shop/jobs.py), run by hueyd.
TASKS = {'default': {'BACKEND': 'hueyd.contrib.djhuey.tasks_backend.HueyBackend'}}

# Django's admin, with hueyd's dashboard as a section of it; proj/urls.py, proj/asgi.py.
if os.environ.get('DJANGO_DASHBOARD') == '1':
    INSTALLED_APPS = ['django.contrib.admin', 'django.contrib.auth', 'django.contrib.contenttypes',
                      'django.contrib.sessions', 'django.contrib.messages', *INSTALLED_APPS,
                      'hueyd.contrib.djhuey.dashboard']
    MIDDLEWARE = ['django.contrib.sessions.middleware.SessionMiddleware',
                  'django.middleware.csrf.CsrfViewMiddleware',
                  'django.contrib.auth.middleware.AuthenticationMiddleware',
                  'django.contrib.messages.middleware.MessageMiddleware']
    ROOT_URLCONF = 'proj.urls'
    PASSWORD_HASHERS = ['django.contrib.auth.hashers.MD5PasswordHasher']  # fast logins: a test
    TEMPLATES = [{'BACKEND': 'django.template.backends.django.DjangoTemplates', 'APP_DIRS': True,
                  'OPTIONS': {'context_processors': [
                      'django.template.context_processors.request',
                      'django.contrib.auth.context_processors.auth',
                      'django.contrib.messages.context_processors.messages']}}]
