"""Tests for hueyd's option schema and configuration loading (hueyd.cli.config)."""

import dataclasses
import re
from pathlib import Path

import pytest

from hueyd.cli.config import EX_CONFIG, Config, ConfigError, load_config, main, render_example

EXAMPLE_FILE = Path(__file__).resolve().parents[1] / 'hueyd.conf.example'

# Written out here, not read from hueyd.cli.options: the schema is what is under test.
OPTION_NAMES = [
    'app', 'preload', 'logfile', 'verbose', 'quiet', 'log_format', 'workers', 'worker_type',
    'processes', 'max_tasks', 'max_memory', 'worker_timeout', 'graceful_timeout',
    'graceful_signal', 'lease_timeout', 'max_deliveries', 'delay', 'max_delay', 'backoff', 'no_periodic', 'scheduler_interval', 'utc',
    'health_check_interval', 'disable_health_check', 'flush_locks', 'extra_locks', 'pidfile',
    'metrics_port', 'metrics_address']
# huey's consumer defaults, and hueyd's as README.md documents them.
DEFAULTS = dict(
    app='blog.main.huey', preload=False, logfile=None, verbose=False, quiet=False,
    log_format='text', workers=1, worker_type='thread', processes=1, max_tasks=None,
    max_memory=None, worker_timeout=60.0, graceful_timeout=30.0, graceful_signal='int',
    lease_timeout=30.0,
    max_deliveries=3, delay=0.1, max_delay=10.0, backoff=1.15, no_periodic=False,
    scheduler_interval=1, utc=True, health_check_interval=10.0, disable_health_check=False,
    flush_locks=False, extra_locks=(), pidfile=None, metrics_port=None,
    metrics_address='0.0.0.0', config_file=None)


@pytest.fixture
def conf(tmp_path):
    """Write a config file; returns its path as a string."""
    def write(text, name='hueyd.conf'):
        path = tmp_path / name
        path.write_text(text)
        return str(path)
    return write


def load(argv=('blog.main.huey',), env=None, config=None):
    argv = list(argv) + (['--config', config] if config else [])
    return load_config(argv, environ=env or {})


def error(*args, **kwargs):
    with pytest.raises(ConfigError) as info:
        load(*args, **kwargs)
    return str(info.value)


# -- defaults and precedence ---------------------------------------------------

def test_defaults_are_huey_consumers_and_the_documented_ones():
    config = load()
    assert dataclasses.asdict(config) == DEFAULTS
    assert config.loglevel == 'INFO'


def test_precedence_command_line_then_environment_then_file_then_defaults(conf):
    path = conf('[hueyd]\napp = file.app\nworkers = 2\ndelay = 0.5\nbackoff = 1.5\n')
    env = {'HUEYD_APP': 'env.app', 'HUEYD_WORKERS': '3', 'HUEYD_DELAY': '0.7'}
    config = load(['cli.app', '-w', '4'], env, config=path)
    assert config.app == 'cli.app'
    assert config.workers == 4          # command line
    assert config.delay == 0.7          # environment
    assert config.backoff == 1.5        # file
    assert config.max_delay == 10.0     # default
    assert config.config_file == path

    assert load([], env, config=path).app == 'env.app'
    assert load([], {}, config=path).app == 'file.app'
    assert load([], {}, config=path).workers == 2


def test_file_named_by_environment_and_overridden_by_command_line(conf):
    env_file = conf('[hueyd]\nworkers = 5\n', 'env.conf')
    cli_file = conf('[hueyd]\nworkers = 6\n', 'cli.conf')
    assert load(env={'HUEYD_CONFIG': env_file}).workers == 5
    config = load(env={'HUEYD_CONFIG': env_file}, config=cli_file)
    assert (config.workers, config.config_file) == (6, cli_file)


def test_empty_environment_variable_means_not_set(conf):
    path = conf('[hueyd]\nworkers = 2\nlogfile = /var/log/hueyd.log\n')
    config = load(env={'HUEYD_WORKERS': '', 'HUEYD_LOGFILE': '  '}, config=path)
    assert (config.workers, config.logfile) == (2, '/var/log/hueyd.log')


def test_keys_accept_dashes_underscores_and_any_case(conf):
    path = conf('[hueyd]\nworker-type = process\nhealth_check_interval = 5\n'
                'MAX-MEMORY = 1G\nExtra_Locks = a, b,,c\nlog-format = JSON\n')
    config = load(config=path)
    assert config.worker_type == 'process'
    assert config.health_check_interval == 5.0
    assert config.max_memory == 1024 ** 3
    assert config.extra_locks == ('a', 'b', 'c')
    assert config.log_format == 'json'


def test_every_option_has_its_environment_variable():
    env = {'HUEYD_APP': 'a.b', 'HUEYD_PRELOAD': 'yes', 'HUEYD_LOGFILE': '/var/log/h.log',
           'HUEYD_VERBOSE': 'on', 'HUEYD_QUIET': 'off', 'HUEYD_LOG_FORMAT': 'json',
           'HUEYD_WORKERS': '8', 'HUEYD_WORKER_TYPE': 'greenlet', 'HUEYD_PROCESSES': '2',
           'HUEYD_MAX_TASKS': '100', 'HUEYD_MAX_MEMORY': '1G', 'HUEYD_WORKER_TIMEOUT': '20',
           'HUEYD_GRACEFUL_TIMEOUT': '4.5', 'HUEYD_GRACEFUL_SIGNAL': 'TERM',
           'HUEYD_LEASE_TIMEOUT': '12',
           'HUEYD_MAX_DELIVERIES': '5', 'HUEYD_DELAY': '0.2', 'HUEYD_MAX_DELAY': '5',
           'HUEYD_BACKOFF': '2', 'HUEYD_NO_PERIODIC': 'yes', 'HUEYD_SCHEDULER_INTERVAL': '15',
           'HUEYD_UTC': 'false', 'HUEYD_HEALTH_CHECK_INTERVAL': '3',
           'HUEYD_DISABLE_HEALTH_CHECK': '1', 'HUEYD_FLUSH_LOCKS': 'true',
           'HUEYD_EXTRA_LOCKS': 'x,y', 'HUEYD_PIDFILE': '/run/hueyd.pid',
           'HUEYD_METRICS_PORT': '9100', 'HUEYD_METRICS_ADDRESS': '127.0.0.1'}
    assert dataclasses.asdict(load([], env)) == dict(
        app='a.b', preload=True, logfile='/var/log/h.log', verbose=True, quiet=False,
        log_format='json', workers=8, worker_type='greenlet', processes=2, max_tasks=100,
        max_memory=1024 ** 3, worker_timeout=20.0, graceful_timeout=4.5, graceful_signal='term',
        lease_timeout=12.0, max_deliveries=5, delay=0.2, max_delay=5.0, backoff=2.0,
        no_periodic=True,
        scheduler_interval=15, utc=False, health_check_interval=3.0, disable_health_check=True,
        flush_locks=True, extra_locks=('x', 'y'), pidfile='/run/hueyd.pid', metrics_port=9100,
        metrics_address='127.0.0.1', config_file=None)


def test_every_command_line_option():
    config = load(['a.b', '-l', 'x.log', '-w', '8', '-k', 'process', '-n', '-d', '0.2', '-m', '5',
                   '-b', '2', '-c', '3', '-C', '-s', '15', '-f', '-L', 'l1,l2', '--max-tasks', '9',
                   '--processes', '2', '--graceful-timeout', '4.5', '--graceful-signal', 'term',
                   '--max-memory', '200MB',
                   '--worker-timeout', '20', '--pidfile', 'p.pid', '--log-format', 'json',
                   '--lease-timeout', '12', '--max-deliveries', '5', '--preload', '-q', '--metrics-port', '9100',
                   '--metrics-address', '127.0.0.1'])
    assert dataclasses.asdict(config) == dict(
        app='a.b', preload=True, logfile='x.log', verbose=False, quiet=True, log_format='json',
        workers=8, worker_type='process', processes=2, max_tasks=9, max_memory=200 * 1024 ** 2,
        worker_timeout=20.0, graceful_timeout=4.5, graceful_signal='term', lease_timeout=12.0,
        max_deliveries=5, delay=0.2,
        max_delay=5.0,
        backoff=2.0,
        no_periodic=True, scheduler_interval=15, utc=True, health_check_interval=3.0,
        disable_health_check=True, flush_locks=True, extra_locks=('l1', 'l2'), pidfile='p.pid',
        metrics_port=9100, metrics_address='127.0.0.1', config_file=None)
    assert config.loglevel == 'ERROR'


def test_config_is_frozen_and_compares_by_value():
    config = load()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.workers = 2
    assert load() == config


def test_config_has_one_attribute_per_option_and_the_file_read():
    assert [field.name for field in dataclasses.fields(Config)] == OPTION_NAMES + ['config_file']


def test_long_forms_of_the_consumers_short_options():
    config = load(['a.b', '--logfile', 'x.log', '--verbose', '--workers', '8', '--worker-type',
                   'process', '--no-periodic', '--delay', '0.2', '--max-delay', '5', '--backoff',
                   '2', '--health-check-interval', '3', '--disable-health-check',
                   '--scheduler-interval', '15', '--utc', '--flush-locks', '--extra-locks', 'l1'])
    assert dataclasses.asdict(config) == dict(
        DEFAULTS, app='a.b', logfile='x.log', verbose=True, workers=8, worker_type='process',
        no_periodic=True, delay=0.2, max_delay=5.0, backoff=2.0, health_check_interval=3.0,
        disable_health_check=True, scheduler_interval=15, utc=True, flush_locks=True,
        extra_locks=('l1',))


def test_percent_signs_are_taken_literally(conf):
    assert load(config=conf('[hueyd]\nlogfile = /var/log/%h.log\n')).logfile == '/var/log/%h.log'


# -- booleans, utc, verbose/quiet ----------------------------------------------

@pytest.mark.parametrize('word, value', [
    ('true', True), ('yes', True), ('on', True), ('1', True), ('TRUE', True),
    ('false', False), ('no', False), ('off', False), ('0', False), ('Off', False)])
def test_boolean_words(conf, word, value):
    assert load(config=conf(f'[hueyd]\nflush_locks = {word}\n')).flush_locks is value


def test_localtime_sets_utc_false(conf):
    assert load(['a.b', '-o']).utc is False
    assert load(['a.b', '--localtime']).utc is False
    assert load(['a.b', '-u']).utc is True
    assert load(config=conf('[hueyd]\nutc = no\n')).utc is False
    assert load(['a.b', '-u'], {'HUEYD_UTC': 'false'}).utc is True
    assert load(['a.b', '-o'], {'HUEYD_UTC': 'true'}).utc is False


def test_verbose_and_quiet_are_exclusive_on_the_command_line(capsys):
    with pytest.raises(SystemExit) as info:
        load(['a.b', '-v', '-q'])
    assert info.value.code == 2
    assert 'not allowed with argument' in capsys.readouterr().err


def test_verbose_and_quiet_are_exclusive_in_file_and_environment(conf):
    path = conf('[hueyd]\nverbose = true\nquiet = yes\n')
    assert error(config=path) == (f'{path}, line 3: quiet cannot be true together with verbose; '
                                  'set only one of them')
    message = error(env={'HUEYD_VERBOSE': '1', 'HUEYD_QUIET': 'on'})
    assert message.startswith('environment: HUEYD_QUIET cannot be true together with HUEYD_VERBOSE')


def test_higher_level_verbosity_replaces_lower_level(conf):
    path = conf('[hueyd]\nquiet = true\n')
    assert load(config=path).loglevel == 'ERROR'
    config = load(['a.b', '-v'], config=path)
    assert (config.verbose, config.quiet, config.loglevel) == (True, False, 'DEBUG')
    assert load(env={'HUEYD_VERBOSE': 'true'}, config=path).loglevel == 'DEBUG'
    assert load(env={'HUEYD_VERBOSE': 'false'}, config=path).loglevel == 'ERROR'


# -- sizes -----------------------------------------------------------------------

@pytest.mark.parametrize('text, size', [
    ('512', 512 * 2 ** 20), ('1.5', int(1.5 * 2 ** 20)), ('512M', 512 * 2 ** 20),
    ('200MB', 200 * 2 ** 20), ('200 MiB', 200 * 2 ** 20), ('1G', 2 ** 30), ('1.5GB', 3 * 2 ** 29),
    ('64k', 64 * 1024), ('4096b', 4096), ('2gib', 2 ** 31), ('1T', 2 ** 40)])
def test_size_parsing(text, size):
    assert load(['a.b', '--max-memory', text]).max_memory == size
    assert load(env={'HUEYD_MAX_MEMORY': text, 'HUEYD_APP': 'a.b'}).max_memory == size


@pytest.mark.parametrize('text', ['lots', '1.5XB', '-1', '0', 'MB', '1e3', '0.1b'])
def test_bad_sizes(conf, text):
    path = conf(f'[hueyd]\nmax_memory = {text}\n')
    assert error(config=path) == (f'{path}, line 2: max_memory = {text!r} is not valid; must be a '
                                  'size such as 512 (MiB), 512M, 200MB, 1G or 1.5GB')


# -- error messages --------------------------------------------------------------

def test_bad_choice_message_names_file_line_key_value_and_choices(conf):
    path = conf('# hueyd\n\n[hueyd]\nworker_type = fork\n')
    assert error(config=path) == (f"{path}, line 4: worker_type = 'fork' is not valid; "
                                  'choose one of: thread, process, greenlet, asyncio')


@pytest.mark.parametrize('key, value, valid', [
    ('workers', '0', 'must be a whole number >= 1'),
    ('workers', 'four', 'must be a whole number >= 1'),
    ('max-tasks', '2.5', 'must be a whole number >= 1'),
    ('processes', '-1', 'must be a whole number >= 1'),
    ('scheduler_interval', '7', 'must be one of: 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60'),
    ('scheduler-interval', '120', 'must be one of: 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60'),
    ('delay', '0', 'must be a number greater than 0'),
    ('max_delay', 'soon', 'must be a number greater than 0'),
    ('health-check-interval', '-5', 'must be a number greater than 0'),
    ('graceful_timeout', 'inf', 'must be a number greater than 0'),
    ('worker_timeout', 'nan', 'must be a number greater than 0'),
    ('backoff', '1', 'must be a number greater than 1'),
    ('backoff', '0.5', 'must be a number greater than 1'),
    ('verbose', 'maybe', 'use true/false, yes/no, on/off or 1/0'),
    ('no-periodic', '2', 'use true/false, yes/no, on/off or 1/0'),
    ('log_format', 'xml', 'choose one of: text, json'),
    ('app', 'blog', 'must be a dotted import path such as blog.main.huey'),
    ('app', 'blog.main:huey', 'must be a dotted import path such as blog.main.huey'),
])
def test_bad_file_values(conf, key, value, valid):
    path = conf(f'[hueyd]\npidfile = /run/hueyd.pid\n\n{key} = {value}\n')
    assert error(config=path) == f'{path}, line 4: {key} = {value!r} is not valid; {valid}'


def test_bad_environment_value_names_the_variable():
    assert error(env={'HUEYD_WORKER_TYPE': 'fork'}) == (
        "environment: HUEYD_WORKER_TYPE = 'fork' is not valid; choose one of: thread, process, greenlet, asyncio")
    assert 'HUEYD_SCHEDULER_INTERVAL' in error(env={'HUEYD_SCHEDULER_INTERVAL': '0'})


def test_bad_command_line_value_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        load(['a.b', '-w', '0'])
    assert info.value.code == 2
    assert "argument -w/--workers: '0' is not valid; must be a whole number >= 1" in \
        capsys.readouterr().err


def test_unknown_key_suggests_the_closest_one(conf):
    path = conf('[hueyd]\nworkers = 2\nworker_typ = thread\n')
    assert error(config=path) == (f"{path}, line 3: unknown key 'worker_typ' (did you mean "
                                  "'worker_type'?); all keys are listed in hueyd.conf.example")
    path = conf('[hueyd]\nhealth-check-intervall = 5\n')
    assert "did you mean 'health_check_interval'?" in error(config=path)
    path = conf('[hueyd]\nzzz = 1\n')
    assert error(config=path) == (f"{path}, line 2: unknown key 'zzz'; all keys are listed in "
                                  'hueyd.conf.example')


def test_same_key_twice(conf):
    path = conf('[hueyd]\nworker_type = thread\nworker-type = process\n')
    assert error(config=path) == (f'{path}, line 3: worker-type repeats worker_type, set earlier; '
                                  'keep only one')
    path = conf('[hueyd]\nworkers = 1\nworkers = 2\n')
    assert error(config=path) == f'{path}, line 3: workers is set a second time'


def test_missing_section(conf):
    path = conf('# nothing here yet\n')
    assert error(config=path) == (f'{path}: no [hueyd] section; put the settings below a [hueyd] '
                                  'line (see hueyd.conf.example)')


def test_unknown_section(conf):
    path = conf('[hueyd]\nworkers = 2\n\n[huey]\nworkers = 3\n')
    assert error(config=path) == (f'{path}, line 4: unknown section [huey]; all settings belong in '
                                  'the single [hueyd] section')


def test_settings_before_the_section_header(conf):
    path = conf('workers = 2\n[hueyd]\n')
    assert error(config=path) == (f"{path}, line 1: 'workers = 2' comes before the [hueyd] line; "
                                  'all settings belong in the [hueyd] section')


def test_ini_syntax_error(conf):
    path = conf('[hueyd]\nworkers = 2\nthis line has no equals sign\n')
    assert error(config=path) == (f"{path}, line 3: cannot parse 'this line has no equals sign\\n'; "
                                  'expected "key = value", a [hueyd] line or a # comment')


def test_missing_file(tmp_path):
    path = str(tmp_path / 'nope.conf')
    assert error(config=path) == f'{path}: config file not found (named by --config)'
    assert error(env={'HUEYD_CONFIG': path}) == f'{path}: config file not found (named by HUEYD_CONFIG)'


def test_unreadable_file(tmp_path):
    assert error(config=str(tmp_path)) == f'{tmp_path}: cannot read config file: Is a directory'
    path = tmp_path / 'latin1.conf'
    path.write_bytes(b'[hueyd]\nlogfile = /tmp/\xe9\n')
    assert error(config=str(path)).startswith(f'{path}: cannot read config file: not UTF-8 text')


def test_missing_app(conf):
    message = error([], config=conf('[hueyd]\nworkers = 2\n'))
    assert message.startswith('no application given')
    for way in ('IMPORT_PATH', 'app = blog.main.huey', 'HUEYD_APP'):
        assert way in message
    assert error([], config=conf('[hueyd]\napp =\n')).startswith('no application given')


# -- reloading and the example file ------------------------------------------

def test_reload_after_editing_the_file(conf):
    path = conf('[hueyd]\nworkers = 2\n')
    argv, env = ['a.b', '--config', path], {'HUEYD_DELAY': '0.5'}
    first = load_config(argv, env)
    assert load_config(argv, env) == first
    Path(path).write_text('[hueyd]\nworkers = 4\nworker_type = greenlet\n')
    second = load_config(argv, env)
    assert (first.workers, second.workers, second.worker_type, second.delay) == \
        (2, 4, 'greenlet', 0.5)
    Path(path).write_text('[hueyd]\nworkers = none\n')
    with pytest.raises(ConfigError):
        load_config(argv, env)


def test_example_file_is_the_rendered_schema():
    assert EXAMPLE_FILE.read_text() == render_example(), \
        'regenerate with: python -m hueyd.cli.config --example > hueyd.conf.example'


def test_example_file_loads_and_uncommented_gives_the_defaults(tmp_path):
    example = str(EXAMPLE_FILE)
    assert load(config=example) == dataclasses.replace(load(), config_file=example)
    lines = EXAMPLE_FILE.read_text().splitlines()
    settings = [line for line in lines if re.match(r'#\w+ =', line)]
    assert [line[1:].split(' =')[0] for line in settings] == OPTION_NAMES
    uncommented = tmp_path / 'all.conf'
    uncommented.write_text('\n'.join(line[1:] if line in settings else line for line in lines))
    assert load(config=str(uncommented)) == dataclasses.replace(load(), config_file=str(uncommented))


def test_main_prints_example_and_exits_78_on_config_errors(capsys, monkeypatch):
    assert main(['--example']) == 0
    assert capsys.readouterr().out == render_example()
    monkeypatch.setenv('HUEYD_WORKERS', 'many')
    assert main(['a.b']) == EX_CONFIG == 78
    assert "hueyd: environment: HUEYD_WORKERS = 'many'" in capsys.readouterr().err
    monkeypatch.delenv('HUEYD_WORKERS')
    assert main(['a.b', '-w', '3']) == 0
    assert 'workers = 3' in capsys.readouterr().out


def test_huey_consumers_shutdown_timeout_flags_set_the_graceful_timeout():
    assert load(['blog.main.huey', '-t', '5']).graceful_timeout == 5.0
    assert load(['blog.main.huey', '--shutdown-timeout', '7.5']).graceful_timeout == 7.5


def test_graceful_signal_takes_int_or_term_only():
    assert load(['blog.main.huey', '--graceful-signal', 'TERM']).graceful_signal == 'term'
    with pytest.raises(SystemExit):
        load(['blog.main.huey', '--graceful-signal', 'HUP'])
