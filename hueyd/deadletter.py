"""Dead letters: messages that cannot run, kept with the reason instead of being dropped.

Records are JSON (the payload base64-encoded), so listing them never unpickles
anything: a dead letter may well be a forged or malicious message.
"""
import base64
import dataclasses
import json
import logging
import time
import uuid
from dataclasses import dataclass

from hueyd.result import Error
from hueyd.storage.protocols import DeadLetters as DeadLettersProtocol

logger = logging.getLogger('hueyd')


@dataclass(frozen=True)
class DeadLetter:
    id: str
    reason: str
    time: float           # unix time it was stored
    payload: bytes        # the raw message, as it was on the queue
    task: str = None      # the task's name, when the message could be decoded
    task_id: str = None

    @classmethod
    def create(cls, payload, reason, task=None, key=None):
        return cls(key or uuid.uuid4().hex, reason, time.time(), bytes(payload),
                   task.name if task is not None else None,
                   task.id if task is not None else None)

    def encode(self):
        record = dict(vars(self), payload=base64.b64encode(self.payload).decode('ascii'))
        return json.dumps(record).encode()

    @classmethod
    def decode(cls, record):
        fields = json.loads(record)
        fields['payload'] = base64.b64decode(fields['payload'])
        return cls(**fields)


class DeadLetters:
    """A Huey's dead letters: keeping, listing, requeueing and purging them."""

    def __init__(self, huey):
        self.huey = huey

    def add(self, payload, reason, task=None, key=None):
        """Keep a message that cannot run, with why; returns its id."""
        return self.keep(DeadLetter.create(payload, reason, task, key))

    def bury(self, payload, reason):
        """See ``Huey.bury``."""
        huey = self.huey
        try:
            message = huey.serializer.deserialize(payload)
            task_id, name = message.id, message.name
        except Exception:
            task_id = name = None
        letter_id = self.keep(
            dataclasses.replace(DeadLetter.create(payload, reason), task=name, task_id=task_id))
        if task_id is not None and huey.results:
            huey.put_result(task_id, Error({
                'error': '%s (dead letter %s)' % (reason, letter_id), 'task': name,
                'task_id': task_id, 'retries': 0, 'retry_delay': 0, 'traceback': None}))
        return letter_id

    def keep(self, letter):
        storage = self.huey.storage
        if not storage.supports(DeadLettersProtocol):
            logger.error('%s keeps no dead letters: message %s dropped (%s); its payload was %r',
                         type(storage).__name__, letter.id, letter.reason, letter.payload)
            return letter.id
        storage.add_dead_letter(letter.id, letter.encode())
        logger.error('dead letter %s: %s', letter.id, letter.reason)
        return letter.id

    def all(self):
        return [DeadLetter.decode(record) for _, record in self.huey.storage.dead_letters()]

    def chosen(self, ids):
        letters = self.all()
        return letters if ids is None else [letter for letter in letters if letter.id in set(ids)]

    def requeue(self, ids=None):
        storage = self.huey.storage
        letters = self.chosen(ids)
        storage.enqueue_many([(letter.payload, None) for letter in letters])
        storage.remove_dead_letters([letter.id for letter in letters])
        return len(letters)

    def purge(self, ids=None):
        return self.huey.storage.remove_dead_letters([letter.id for letter in self.chosen(ids)])
