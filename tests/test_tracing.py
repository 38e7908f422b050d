"""OpenTelemetry (hueyd.tracing): the trace context travels in the message, so the enqueue
and the run join the caller's trace, in this process and across a real daemon; messages
without it keep their format; nothing changes, nothing is imported, without the extra."""
import base64
import json
import subprocess
import sys

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from daemon_harness import make_app, start_daemon, stop_gracefully  # noqa: F401
from hueyd import MemoryHuey
from hueyd.tracing import instrument
from ops_support import add_test_tasks

# add(1, 2) with id 'written-before-headers', as hueyd serialized it before messages had
# headers (registered as test_tracing.add, this module's name under pytest).
OLD_MESSAGE = base64.b64decode(
    'gAWVZgAAAAAAAACMDmh1ZXlkLnJlZ2lzdHJ5lIwHTWVzc2FnZZSTlCiMFndyaXR0ZW4tYmVmb3JlLWhlYWRlcnOUjBB0'
    'ZXN0X3RyYWNpbmcuYWRklE5LAEsATk5OTk5OTksBSwKGlH2UTksAdJSBlC4=')


def traced_huey():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    huey = MemoryHuey('traced')
    assert instrument(huey, provider) is True
    return huey, provider.get_tracer('test'), exporter


def run_all(huey):
    while (task := huey.dequeue()) is not None:
        huey.execute(task)


def test_the_enqueue_and_the_run_join_the_callers_trace_and_so_does_the_next_stage():
    huey, tracer, exporter = traced_huey()

    @huey.task()
    def add(a, b):
        return a + b

    @huey.task()
    def boom():
        raise ValueError('on purpose')

    with tracer.start_as_current_span('request') as request:
        pipeline = huey.enqueue(add.s(1, 2).then(add, 3))
        failing = boom()
    run_all(huey)
    assert pipeline.get() == [3, 6]
    spans = {(span.name, span.attributes['messaging.message.id']): span
             for span in exporter.get_finished_spans() if span.name != 'request'}
    first, second = pipeline
    chain = [('enqueue add', first.id), ('run add', first.id), ('enqueue add', second.id),
             ('run add', second.id)]
    parent = request.get_span_context()
    for key in chain:  # each span is the child of the one before it
        span = spans.pop(key)
        assert span.context.trace_id == parent.trace_id
        assert span.parent.span_id == parent.span_id, key
        assert span.kind == (SpanKind.PRODUCER if key[0] == 'enqueue add' else SpanKind.CONSUMER)
        parent = span.context
    run = spans.pop(('run boom', failing.id))
    assert run.parent.span_id == spans.pop(('enqueue boom', failing.id)).context.span_id
    assert run.status.status_code == StatusCode.ERROR
    assert [event.attributes['exception.type'] for event in run.events] == ['ValueError']
    assert spans == {}


def test_a_task_enqueued_outside_any_span_starts_a_trace_and_a_retry_stays_in_it():
    huey, tracer, exporter = traced_huey()

    @huey.task(retries=1)
    def flaky():
        raise ValueError('again')

    flaky()
    run_all(huey)
    enqueue, run, retry, rerun = sorted(exporter.get_finished_spans(),
                                        key=lambda span: span.start_time)
    assert enqueue.parent is None and enqueue.name == 'enqueue flaky'
    assert (run.parent.span_id, retry.parent.span_id, rerun.parent.span_id) == (
        enqueue.context.span_id, run.context.span_id, retry.context.span_id)
    assert len({span.context.trace_id for span in (enqueue, run, retry, rerun)}) == 1


def test_messages_without_a_context_keep_their_format_and_old_ones_run():
    huey = MemoryHuey('plain')

    @huey.task()
    def add(a, b):
        return a + b

    task = add.s(1, 2)
    task.id = 'written-before-headers'
    assert huey.serialize_task(task) == OLD_MESSAGE  # nothing traced: the same bytes
    old = huey.deserialize_task(OLD_MESSAGE)
    assert old.headers is None and huey.execute(old) == 3
    traced, _, _ = traced_huey()
    traced.registry.register(type(task))  # the same task, on an instrumented Huey
    assert traced.execute(traced.deserialize_task(OLD_MESSAGE)) == 3
    stamped = traced.deserialize_task(traced.serialize_task(task))
    assert set(stamped.headers) == {'traceparent'}


def python(code):
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done


def test_without_the_extra_nothing_changes_and_nothing_is_imported():
    # The redis client imports OpenTelemetry itself when it is installed: what counts is
    # that hueyd adds nothing to what `import hueyd.api` brought.
    body = '''
import hueyd.api
before = {name for name in sys.modules if name.startswith('opentelemetry')}
from hueyd import MemoryHuey
huey = MemoryHuey('plain')
@huey.task()
def add(a, b):
    return a + b
task = add.s(1, 2)
plain = huey.serialize_task(task)
%s
assert huey.serialize_task(task) == plain
assert huey.execute(huey.deserialize_task(plain)) == 3
assert {name for name in sys.modules if name.startswith('opentelemetry')} == before
assert 'opentelemetry.propagate' not in sys.modules
'''
    # Installed, not asked for: never imported.
    python('import sys\n' + body % '')
    # Asked for, not installed (None in sys.modules is how Python spells that): a warning.
    done = python("import sys; sys.modules['opentelemetry'] = None\n" + body % (
        'from hueyd.tracing import instrument\nassert instrument(huey) is False'))
    assert ("tasks of 'plain' are not traced: OpenTelemetry is not installed "
            "(pip install 'hueyd[otel]')") in done.stderr


APP_TRACING = '''

if os.environ.get('HUEYD_TEST_SPANS'):  # the daemon's processes write their spans there
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
    from hueyd.tracing import instrument
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(
        out=open(os.environ['HUEYD_TEST_SPANS'], 'a'),
        formatter=lambda span: span.to_json(indent=None) + '\\n')))
    instrument(huey, provider)
'''


def test_a_task_run_by_the_daemon_joins_the_trace_of_its_caller(make_app, start_daemon,
                                                                tmp_path):
    app = make_app('sqlite')
    with open(app.path, 'a') as f:
        f.write(APP_TRACING)
    app = add_test_tasks(app)  # reloads app.py (here, without HUEYD_TEST_SPANS)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument(app.huey, provider)
    spans_file = str(tmp_path / 'spans.jsonl')
    daemon = start_daemon(app, '-k', 'process', '-d', '0.01', '-m', '0.1',
                          env={'HUEYD_TEST_SPANS': spans_file})
    with provider.get_tracer('test').start_as_current_span('request') as request:
        ok, failing = app.record('traced'), app.fail('traced')
    enqueued = {span.attributes['messaging.message.id']: span
                for span in exporter.get_finished_spans() if span.name.startswith('enqueue')}

    def runs():
        try:
            with open(spans_file) as f:
                spans = [json.loads(line) for line in f]
        except FileNotFoundError:
            return None
        found = {span['attributes']['messaging.message.id']: span for span in spans
                 if span['name'].startswith('run ')}
        return len(found) == 2 and found

    runs = daemon.wait_until(runs, message='the daemon wrote no run spans')
    for result in (ok, failing):
        run, enqueue = runs[result.id], enqueued[result.id]
        assert int(run['context']['trace_id'], 16) == request.get_span_context().trace_id
        assert int(run['parent_id'], 16) == enqueue.context.span_id
        assert enqueue.parent.span_id == request.get_span_context().span_id
    assert runs[ok.id]['status']['status_code'] == 'UNSET'
    assert runs[failing.id]['status']['status_code'] == 'ERROR'
    stop_gracefully(daemon)
