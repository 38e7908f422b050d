"""Dead letters: messages that cannot run, kept with the reason instead of being dropped.

Records are JSON (the payload base64-encoded), so listing them never unpickles
anything: a dead letter may well be a forged or malicious message.
"""
import base64
import json
import time
import uuid
from dataclasses import dataclass


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
