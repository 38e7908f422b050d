"""Revoking tasks: one call (by id), every call of a task, until a time, or just once.

A revocation is stored under ``r:<task id>`` or ``rt:<module.task name>`` as the
serialized pair ``(revoke_until, revoke_once)``.
"""
from hueyd.constants import EmptyData
from hueyd.result import Result
from hueyd.task import Task, TaskWrapper
from hueyd.times import now, to_naive


class Revocations:
    def __init__(self, huey):
        self.huey = huey

    def class_key(self, task_class):
        return 'rt:%s' % self.huey.registry.task_to_string(task_class)

    def keys(self, task):
        """The keys that revoke ``task``: a Task or its Result (itself, or its class), a
        task function or class (every call), or a task id (that call)."""
        if isinstance(task, TaskWrapper):
            task = task.task_class
        if isinstance(task, type):
            return [self.class_key(task)]
        if isinstance(task, Result):
            task = task.task
        if isinstance(task, Task):
            return [task.revoke_id, self.class_key(type(task))]
        return [Task(id=task).revoke_id]

    def key(self, task):
        """The one key that revokes ``task`` (the first of ``keys()``)."""
        return self.keys(task)[0]

    def put(self, key, revoke_until, revoke_once):
        huey = self.huey
        if revoke_until is not None:
            revoke_until = to_naive(revoke_until, huey.utc)
        huey.storage.put_revocation(key, huey.serializer.serialize((revoke_until, revoke_once)))

    def revoke(self, task, revoke_until=None, revoke_once=False):
        """Revoke what ``task`` names (see ``keys()``)."""
        self.put(self.key(task), revoke_until, revoke_once)

    def restore(self, task):
        """Undo ``revoke()`` (same arguments); True if there was a revocation."""
        return self.huey.storage.delete_revocation(self.key(task))

    def is_revoked(self, task, timestamp=None, peek=True, snapshot=None):
        """See ``Huey.is_revoked``."""
        if snapshot is not None and not snapshot:
            return False  # nothing is revoked at all: the usual case, and a claim tells it
        huey, storage = self.huey, self.huey.storage
        keys = self.keys(task)
        if snapshot is None:
            values = storage.read_revocations(keys)
        else:
            values = [snapshot.get(key, EmptyData) for key in keys]
        for key, data in zip(keys, values):
            if data is EmptyData:
                continue
            revoke_until, revoke_once = huey.serializer.deserialize(data)
            timestamp = timestamp or now(huey.utc)
            if revoke_until is not None and revoke_until <= timestamp:
                if not peek:
                    storage.delete_revocation(key)  # the revocation has run out
                continue
            if revoke_once and not peek and not storage.delete_revocation(key):
                continue  # another worker used it up (or it was restored) meanwhile
            return True
        return False

    def snapshot(self, tasks):
        """The revocations of ``tasks``, in one read: ``{key: stored value}``."""
        keys = list(dict.fromkeys(key for task in tasks for key in self.keys(task)))
        return {key: value for key, value in zip(keys, self.huey.storage.read_revocations(keys))
                if value is not EmptyData}
