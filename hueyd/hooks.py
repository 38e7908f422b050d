"""Named callbacks a Huey runs around tasks and workers (pre/post-execute, startup, shutdown)."""
import logging

logger = logging.getLogger('hueyd')


class Hooks:
    """Named callbacks run in registration order; a decorator registers one."""

    def __init__(self, kind):
        self.kind = kind        # for the log: 'startup', 'post-execute', ...
        self.functions = {}     # name -> callable, in registration order

    def register(self, name=None):
        def decorator(fn):
            self.functions[name or fn.__name__] = fn
            return fn
        return decorator

    def unregister(self, name):
        """Remove the hook registered as ``name`` (or the function itself); True if there was one."""
        return self.functions.pop(getattr(name, '__name__', name), None) is not None

    def __getitem__(self, name):
        return self.functions[name]

    def values(self):
        """The callables, in registration order (huey kept its hooks in a dict)."""
        return list(self.functions.values())

    def __iter__(self):
        """``(name, fn)`` pairs, a copy: a hook may unregister itself while they run."""
        functions = self.functions
        return iter(list(functions.items()) if functions else ())  # none: no copy per task

    def run(self, *args):
        """Call every hook; one that raises is logged and the others still run."""
        for name, fn in self:
            try:
                fn(*args)
            except Exception:
                logger.exception('%s hook %r failed', self.kind, name)
