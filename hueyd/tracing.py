"""OpenTelemetry traces of tasks: ``pip install 'hueyd[otel]'``, then next to the Huey::

    from hueyd.tracing import instrument
    huey = Huey('blog', url=...)
    instrument(huey)            # in the code that enqueues and in the daemon alike

Enqueueing makes a span ``enqueue <task>`` (kind PRODUCER), a child of whatever
span is current, and the message carries its context (W3C ``traceparent`` and
``tracestate`` in the task's ``headers``); the worker runs the task in a span
``run <task>`` (kind CONSUMER), a child of that one, so the caller's trace shows
the task and everything the task does, its own enqueues included. A failure
marks the run span as an error and records the exception.

A message without headers pickles exactly as before headers existed, so old
messages run and consumers that predate them read new ones that carry none.
A task re-enqueued outside any span (a retry scheduled for later, a task whose
worker died) keeps the context it came with: it stays in its first trace.

The spans go to the TracerProvider given, else to OpenTelemetry's global one,
configured as usual (the SDK and an exporter; ``opentelemetry-instrument``).
A pool flushes it as it stops gracefully: a process that is killed loses what
the provider had not exported yet.

Nothing here imports OpenTelemetry until ``instrument()`` is called, and
without it installed ``instrument()`` only warns: nothing else changes.
"""
import contextlib
import logging

from hueyd import __version__
from hueyd import signals as S

logger = logging.getLogger('hueyd')

INSTALL_HINT = "pip install 'hueyd[otel]'"
FAILURES = (S.SIGNAL_ERROR, S.SIGNAL_TIMEOUT, S.SIGNAL_LOCKED, S.SIGNAL_RATE_LIMITED,
            S.SIGNAL_CANCELED, S.SIGNAL_INTERRUPTED)


def instrument(huey, tracer_provider=None):
    """Trace the tasks of ``huey``; call it once per Huey. Returns False, after a warning,
    when OpenTelemetry is not installed."""
    try:
        tracing = Tracing(huey, tracer_provider)
    except ImportError:
        logger.warning('tasks of %r are not traced: OpenTelemetry is not installed (%s)',
                       huey.name, INSTALL_HINT)
        return False
    huey.registry.stamps.append(tracing.stamp)
    huey.executor.around.append(tracing.run)
    huey.observe(*FAILURES)(tracing.failed)
    huey.on_shutdown('hueyd.tracing')(tracing.flush)
    return True


class Tracing:
    def __init__(self, huey, tracer_provider=None):
        from opentelemetry import propagate, trace
        self.huey = huey
        self.trace, self.propagate = trace, propagate
        self.provider = tracer_provider
        self.tracer = trace.get_tracer('hueyd', __version__, tracer_provider=tracer_provider)

    def attributes(self, task, operation, kind):
        return {'messaging.system': 'hueyd', 'messaging.operation.name': operation,
                'messaging.operation.type': kind, 'messaging.destination.name': self.huey.name,
                'messaging.message.id': task.id, 'hueyd.task.name': task.name,
                'hueyd.task.retries': task.retries}

    def stamp(self, task):
        """Called in the enqueuing thread just before the task's message is made."""
        in_a_span = self.trace.get_current_span().get_span_context().is_valid
        if not in_a_span and 'traceparent' in (task.headers or {}):
            return  # re-enqueued outside any span: it stays in the trace it came with
        with self.tracer.start_as_current_span(
                'enqueue ' + task.name, kind=self.trace.SpanKind.PRODUCER,
                attributes=self.attributes(task, 'enqueue', 'create')):
            headers = dict(task.headers or {})
            self.propagate.inject(headers)
            task.headers = headers

    @contextlib.contextmanager
    def run(self, task):
        # No headers (immediate mode, an old message): a child of the current span, if any.
        parent = self.propagate.extract(task.headers) if task.headers else None
        with self.tracer.start_as_current_span(
                'run ' + task.name, context=parent, kind=self.trace.SpanKind.CONSUMER,
                attributes=self.attributes(task, 'run', 'process')):
            yield

    def failed(self, signal, task, outcome):
        span = self.trace.get_current_span()  # the run span, while the task runs
        if outcome.exception is not None:
            span.record_exception(outcome.exception)
        span.set_status(self.trace.Status(self.trace.StatusCode.ERROR, signal))

    def flush(self):
        """A pool leaves with os._exit(), which skips the provider's own flush at exit."""
        provider = self.provider or self.trace.get_tracer_provider()
        if hasattr(provider, 'force_flush'):
            provider.force_flush()
