"""Groups and chords: enqueueing their members, and running a chord's callback once.

Each member's last stage carries ``(chord id, size, index, callback)``. When a
member ends, for good, its value (or an Error, or a Skipped) is stored under
``chord:<id>:<index>`` with put_if_empty (so a member that runs twice, e.g.
redelivered after a crash, counts once) and the counter ``chord:<id>`` is
incremented atomically; whoever brings it to ``size`` reads the values in
member order and enqueues the callback.
"""
import copy
import logging
import uuid

from hueyd.result import ChordResult, Result, ResultGroup
from hueyd.task import chord, group

logger = logging.getLogger('hueyd')


class Chords:
    def __init__(self, huey):
        self.huey = huey

    def enqueue(self, workflow):
        """Enqueue a ``group`` (a ResultGroup) or a ``chord`` (a ChordResult)."""
        if isinstance(workflow, chord):
            return self.enqueue_chord(workflow)
        handles = [self.huey.enqueue(task) for task in workflow.tasks]
        return ResultGroup(handles) if self.huey.results else None

    def enqueue_chord(self, workflow):
        huey = self.huey
        cid, size = str(uuid.uuid4()), len(workflow.tasks)
        callback = workflow.callback
        members, heads = [], []
        for index, member in enumerate(workflow.tasks):
            if isinstance(member, group):
                raise ValueError('a group cannot be a chord member; make it a chord '
                                 'with .then() first')
            head = member.callback if isinstance(member, chord) else member
            tail = head
            while tail.on_complete is not None:
                tail = tail.on_complete
            tail.chord_config = (cid, size, index, callback)
            members.append(Result(huey, tail))
            if isinstance(member, chord):
                self.enqueue_chord(member)  # its callback reports to this chord
            else:
                heads.append(head)
        if heads:
            huey.enqueue_many(heads)
        if not size:
            ready = copy.copy(callback)  # the chord may be enqueued again: keep its callback as it is
            ready.extend_data(([],))
            huey.enqueue(ready)
        stages = []
        stage = callback
        while stage is not None:
            stages.append(Result(huey, stage))
            stage = stage.on_complete
        return ChordResult(members, stages[0], ResultGroup(stages) if len(stages) > 1 else None)

    def member_done(self, config, value):
        """A member ended with ``value``; the last one to end enqueues the callback."""
        huey, storage = self.huey, self.huey.storage
        cid, size, index, callback = config
        if not huey.put_if_empty('chord:%s:%d' % (cid, index), value):
            logger.warning('member %d of chord %s ended a second time (a redelivered '
                           'task?); it was counted once', index, cid)
            return
        if storage.incr('chord:%s' % cid) != size:
            return
        keys = ['chord:%s:%d' % (cid, i) for i in range(size)]
        stored = storage.peek_many(keys)
        results = [huey.serializer.deserialize(stored[key]) if key in stored else None
                   for key in keys]
        for key in keys:
            storage.delete_data(key)
        storage.delete_counter('chord:%s' % cid)
        callback.extend_data((results,))
        huey.enqueue(callback)

    def abort_member(self, task, value):
        """A pipeline stage ended it for good: its chord (if any) gets ``value`` for it."""
        while task is not None:
            if task.chord_config is not None:
                return self.member_done(task.chord_config, value)
            task = task.on_complete
