"""The query options of storage URLs: which ones are the storage's own, and their values."""
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def parse_value(value):
    """A query value as a bool, an int or a float when it reads as one; else the string."""
    if value.lower() in ('true', 'yes', 'on'):
        return True
    if value.lower() in ('false', 'no', 'off'):
        return False
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    return value


def take_options(url, names):
    """``(options, url)``: the query options in ``names`` (as strings), and the URL without
    them, for the client library (redis-py, libpq) that reads the rest."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    options = {key: value for key, value in query if key in names}
    if options:
        rest = urlencode([(key, value) for key, value in query if key not in names])
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment))
    return options, url
