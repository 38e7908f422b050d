"""The dashboard's figures as JSON-ready dicts, read through Huey's public methods.

Task arguments and results are user data: they leave here as text (``repr``,
shortened) that the page shows as text, never as markup. Arguments are None
unless the dashboard was started with ``show_args``. Dead letters are never
unpickled (see hueyd.deadletter).
"""
import reprlib

from hueyd import taskstats
from hueyd.constants import EmptyData
from hueyd.nodes import collect_status, read_nodes
from hueyd.result import Error
from hueyd.storage.protocols import Stats
from hueyd.times import to_timestamp

LIST_LIMIT = 200     # messages listed from the queue and from the schedule
TEXT_LIMIT = 4000    # characters of a result or an argument list shown

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = TEXT_LIMIT
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 50
_repr.maxlevel = 4


def text(value):
    return _repr.repr(value)


def arguments(task):
    parts = [text(arg) for arg in task.args]
    parts += ['%s=%s' % (key, text(value)) for key, value in task.kwargs.items()]
    return ', '.join(parts)[:TEXT_LIMIT]


def message(huey, task, show_args, revocations):
    return {
        'id': task.id,
        'task': task.name,
        'args': arguments(task) if show_args else None,
        'eta': to_timestamp(task.eta, huey.utc) if task.eta else None,
        'priority': task.priority,
        'retries': task.retries,
        'revoked': huey.is_revoked(task, snapshot=revocations),
    }


def status(huey, app_path, monitor):
    """``hueyctl status``'s figures, the chart of the last hour, and whether events are on.

    The chart comes from the storage's statistics (every node's, kept across restarts)
    when it keeps them (``chart_stored``), else from what this dashboard saw."""
    figures = collect_status(huey, app_path)
    stored = huey.storage.supports(Stats)
    figures.update(chart=taskstats.chart(huey.storage) if stored else monitor.chart(),
                   chart_stored=stored, events_on=monitor.events_on,
                   events_off_reason=monitor.events_off_reason)
    return figures


def stats(huey):
    """``hueyctl stats --json``: per task, the last hour's and the last 24 hours' figures."""
    return taskstats.collect(huey.storage)


def messages(huey, show_args, limit=LIST_LIMIT):
    """The first ``limit`` messages of the queue (next first) and of the schedule (soonest
    first), with the counts of both."""
    queue, schedule = huey.pending(limit), huey.scheduled(limit)
    revocations = huey.read_revocations(queue + schedule)
    return {
        'limit': limit,
        'queued': huey.pending_count(),
        'scheduled': huey.scheduled_count(),
        'queue': [message(huey, task, show_args, revocations) for task in queue],
        'schedule': [message(huey, task, show_args, revocations) for task in schedule],
    }


def dead_letters(huey):
    return [{'id': letter.id, 'reason': letter.reason, 'time': letter.time, 'task': letter.task,
             'task_id': letter.task_id, 'size': len(letter.payload)}
            for letter in huey.dead_letters()]


def running(huey, task_id):
    """Where the task runs now (node, pool pid, worker, since), or None."""
    for node in read_nodes(huey.storage) or []:
        for pool in node['pools']:
            for worker in pool.get('workers', []):
                if worker.get('state') == 'busy' and worker.get('id') == task_id:
                    return {'node': node.get('node'), 'pid': pool.get('pid'),
                            'worker': worker.get('worker'), 'since': worker.get('since')}
    return None


def task(huey, task_id, monitor, show_args):
    """What is known of one task: where it is, its stored result or error, its events
    seen by this dashboard."""
    info = {'id': task_id, 'task': None, 'args': None, 'result': None, 'error': None,
            'traceback': None, 'where': None, 'eta': None, 'retries': None}
    found = messages(huey, show_args)
    for place, rows in (('queued', found['queue']), ('scheduled', found['schedule'])):
        for row in rows:
            if row['id'] == task_id:
                info.update(row, where=place)
    info['running'] = running(huey, task_id)
    if info['running']:
        info['where'] = 'running'
    info['revoked'] = huey.is_revoked(task_id)
    try:
        value = huey.get_raw(task_id, peek=True)
    except Exception as exc:  # a result this process cannot unpickle
        value, info['result'] = EmptyData, 'the stored result cannot be read here: %r' % exc
    if isinstance(value, Error):
        metadata = value.metadata
        info.update(error=str(metadata.get('error')), traceback=metadata.get('traceback'),
                    task=info['task'] or metadata.get('task'))
    elif value is not EmptyData:
        info['result'] = text(value)
    info['events'], _ = monitor.events_after(task_id=task_id)
    if not info['task'] and info['events']:
        info['task'] = info['events'][-1].get('task')
    info['state'] = state(info)
    return info


def state(info):
    if info['where']:
        return info['where']
    if info['error'] is not None:
        return 'failed'
    if info['result'] is not None:
        return 'finished'
    if info['events']:
        return info['events'][-1]['status']
    return 'revoked' if info['revoked'] else 'unknown'
