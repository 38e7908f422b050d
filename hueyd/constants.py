"""Small shared constants with no dependencies of their own."""


class _EmptyData:
    """Returned by a storage when a key holds no value (None is a valid value)."""

    __slots__ = ()

    def __repr__(self):
        return 'EmptyData'

    def __bool__(self):
        return False


EmptyData = _EmptyData()
