"""Process titles (``ps``/``top`` show ``hueyd: master``, ``hueyd: worker 3``...).

setproctitle is optional at runtime: without it titles are simply not set.
"""

try:
    from setproctitle import setproctitle as _setproctitle
except Exception:  # ImportError, or a broken C extension: never fatal.
    _setproctitle = None


def set_title(text):
    """Set the title to ``hueyd: <text>``; silently does nothing on failure."""
    if _setproctitle is not None:
        try:
            _setproctitle(f'hueyd: {text}')
        except Exception:
            pass
