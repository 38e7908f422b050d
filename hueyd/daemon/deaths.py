"""What becomes of the tasks of a pool that died: a crash count per message, and a limit.

When a pool dies on its own (a segfault, ``os._exit``, the OOM killer, a
SIGKILL from the health check), the master reads from its heartbeat which tasks
its workers were running and records a :class:`Death`. It hands the deaths of a
slot to the next pool it starts there, which settles them once the application
is loaded, before it takes any work:

* every task that was running counts one more crash, kept in the message itself
  (``Task.crashes``); at ``--max-deliveries`` crashes it goes to the dead letters
  and its caller's ``get()`` raises TaskException (WorkerCrashed) naming the
  reason; below that it goes back to the end of the queue;
* the rest of the dead pool's claims (claimed ahead, never started) go back to
  the queue at once, uncounted, instead of waiting for the lease to run out;
* an ``at_most_once`` task that was running is not in the claims (it was
  acknowledged before it started) but in the dead letters: it is not run again,
  and its caller's ``get()`` raises.

A death the replacement cannot settle (the storage is away, or the scheduler
already returned the claims after ``--lease-timeout``) leaves the claims to
lease recovery: the task runs again, and that crash is not counted.
"""
import dataclasses
import logging

from hueyd.exceptions import WorkerCrashed

logger = logging.getLogger('hueyd.daemon')


@dataclasses.dataclass(frozen=True)
class Death:
    worker: str      # the dead pool's worker id in storage ("host:pid")
    running: tuple   # ids of the tasks its workers were running
    how: str         # how it ended: "signal SIGSEGV", "exit 0 while running a task"


def settle(huey, death, max_deliveries):
    """Count the crash of each task ``death`` names, then return the dead pool's other claims."""
    storage = huey.storage
    running = set(death.running)
    found = set()
    for receipt, data in storage.worker_claims(death.worker):
        try:
            task = huey.deserialize_task(data)
        except Exception:
            continue  # goes back with the rest; the pool that claims it buries it
        if task.id not in running:
            continue
        found.add(task.id)
        task.crashes += 1
        if task.crashes >= max_deliveries:
            reason = ('%s was running when its worker died %d time(s), the last by %s; '
                      'hueyd stops at --max-deliveries %d' % (task, task.crashes, death.how,
                                                              max_deliveries))
            letter = huey.add_dead_letter(data, reason, task)
            huey.give_up(task, WorkerCrashed(
                '%s; the message is dead letter %s: fix the task, then run it again with '
                '"hueyctl dead-letters requeue %s"' % (reason, letter, letter)))
        else:
            logger.warning('%s was running when its worker died (%s); running it again '
                           '(crash %d of at most %d)', task, death.how, task.crashes,
                           max_deliveries)
            storage.enqueue(huey.serialize_task(task), task.priority)
        storage.ack(death.worker, [receipt])
    storage.retire_worker(death.worker)
    if running - found:
        _end_at_most_once(huey, death, {'running.' + task_id for task_id in running - found})


def _end_at_most_once(huey, death, keys):
    """Tell the callers of the at_most_once tasks that died with the pool (see Pool)."""
    for letter in huey.dead_letters():
        if letter.id in keys:
            task = huey.deserialize_task(letter.payload)
            huey.give_up(task, WorkerCrashed(
                '%s (at_most_once) was running when its worker died (%s); it will not run '
                'again: see dead letter %s' % (task, death.how, letter.id)))
