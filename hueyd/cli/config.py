"""Load hueyd's settings: command line > environment > config file > defaults.

    config = load_config(sys.argv[1:])   # ConfigError -> print it, exit EX_CONFIG

Everything is derived from the schema in :mod:`hueyd.cli.options`.  The loader
keeps no state, so calling it again with the same arguments re-reads the file
(for SIGHUP).

    python -m hueyd.cli.config --example > hueyd.conf.example   # regenerate the example
    python -m hueyd.cli.config [hueyd options]                   # print the effective settings
"""

import argparse
import configparser
import dataclasses
import difflib
import os
import re
import sys
import textwrap

from hueyd import __version__
from hueyd.cli.options import BY_NAME, OPTIONS
from hueyd.exceptions import ConfigError

EX_CONFIG = 78          # sysexits.h: configuration error
SECTION = 'hueyd'
EXAMPLE = 'hueyd.conf.example'


Config = dataclasses.make_dataclass(
    'Config', [(opt.name, object) for opt in OPTIONS] + [('config_file', object)], frozen=True,
    namespace={
        '__module__': __name__,
        '__doc__': 'The settings hueyd runs with: one attribute per option of '
                   'hueyd.cli.options.OPTIONS, config_file (the file read, or None) and loglevel.',
        'loglevel': property(
            lambda self: 'DEBUG' if self.verbose else 'ERROR' if self.quiet else 'INFO',
            doc="'DEBUG' (verbose), 'ERROR' (quiet) or 'INFO'"),
    })


# -- command line -------------------------------------------------------------

def did_you_mean(word, candidates):
    close = difflib.get_close_matches(word, candidates, n=1)
    return f' (did you mean {close[0]!r}?)' if close else ''


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, saying "did you mean ...?" for a mistyped option or command, as
    the config file does for a mistyped key. hueyd and hueyctl (its subcommands too) use it."""

    argv = ()

    def parse_known_args(self, args=None, namespace=None):
        self.argv = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(args, namespace)

    def names(self):
        """Every option and command this parser and its subcommands know."""
        found = set()
        for action in self._actions:
            found.update(action.option_strings)
            if isinstance(action.choices, dict):  # the subcommands: name -> parser
                found.update(action.choices)
                for sub in action.choices.values():
                    found.update(sub.names())
        return found

    def error(self, message):
        # A mistyped option is the real error even when argparse trips on something
        # after it first (`--wokers 3` makes 3 the IMPORT_PATH): name it.
        known = self.names()
        for arg in self.argv:
            if arg == '--':
                break
            name = arg.split('=', 1)[0]
            if name.startswith('--') and not any(option.startswith(name) for option in known):
                message = f'unrecognized option {name}{did_you_mean(name, known)}'
                break
        else:
            if choice := re.search(r"invalid choice: '(.*?)' \(choose from (.*)\)", message):
                choices = (re.findall(r"'([^']*)'", choice[2])
                           or [word.strip() for word in choice[2].split(',')])
                message += did_you_mean(choice[1], choices)
        super().error(message)


def _cli_type(opt):
    def convert(text):
        if text is argparse.SUPPRESS:   # IMPORT_PATH not given: argparse passes the default
            return text
        try:
            return opt.kind(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f'{text!r} is not valid; {e}') from None
    return convert


def build_parser(prog='hueyd'):
    """The argument parser; only options actually given end up in the namespace."""
    parser = ArgumentParser(
        prog=prog, argument_default=argparse.SUPPRESS,
        description='Run the tasks of a huey application in a supervised pool of processes.',
        epilog='Every option can also be set in the config file (see hueyd.conf.example) or in '
               'an environment variable HUEYD_<OPTION>, e.g. HUEYD_WORKER_TYPE=process. The '
               'command line wins over the environment, which wins over the file.')
    parser.add_argument('--config', metavar='FILE',
                        help=f'read settings from this INI file (or HUEYD_CONFIG); see {EXAMPLE}')
    parser.add_argument('--version', action='version', version=f'%(prog)s {__version__}')
    sections, exclusive = {}, {}
    for opt in OPTIONS:
        if opt.section not in sections:
            sections[opt.section] = parser.add_argument_group(opt.section)
        group = sections[opt.section]
        if opt.excludes:
            pair = frozenset((opt.name, opt.excludes))
            if pair not in exclusive:
                exclusive[pair] = group.add_mutually_exclusive_group()
            group = exclusive[pair]
        if opt.is_flag:
            group.add_argument(*opt.flags, dest=opt.name, action='store_true', help=opt.help)
            if opt.off:
                group.add_argument(*opt.off, dest=opt.name, action='store_false',
                                   help=f'the opposite of {opt.long}')
            continue
        default = f' (default: {_show(opt.default)})' if opt.default not in (None, ()) else ''
        choices = getattr(opt.kind, 'choices', None)
        kwargs = dict(type=_cli_type(opt), help=opt.help + default,
                      metavar=opt.metavar or '{%s}' % ','.join(choices))
        if opt.positional:
            group.add_argument(opt.name, nargs='?', **kwargs)
        else:
            group.add_argument(*opt.flags, dest=opt.name, **kwargs)
    return parser


# -- config file and environment ----------------------------------------------

def _convert(entries):
    """[(option, key as written, text, where)] -> {name: value}.  Empty text means 'not set'."""
    values, keys = {}, {}
    for opt, key, text, where in entries:
        if not text.strip():
            continue
        try:
            values[opt.name] = opt.kind(text)
        except ValueError as e:
            raise ConfigError(f'{where}: {key} = {text!r} is not valid; {e}') from None
        keys[opt.name] = key
        if values[opt.name] and values.get(opt.excludes):
            raise ConfigError(f'{where}: {key} cannot be true together with '
                              f'{keys[opt.excludes]}; set only one of them')
    return values


def _read_env(environ):
    return _convert([(opt, opt.env, environ[opt.env], 'environment')
                     for opt in OPTIONS if opt.env in environ])


def _line_numbers(text):
    """{(section, key): first line} and {(section, None): line of the header}."""
    found, section = {}, None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if header := re.match(r'\[(.+)\]', line):
            section = header[1]
            found.setdefault((section, None), n)
        elif section and line[:1] not in ('', '#', ';'):
            if key := re.match(r'(.*?)\s*[=:]', line):
                found.setdefault((section, key[1].lower()), n)
    return found


def _syntax_error(path, e):
    if isinstance(e, configparser.MissingSectionHeaderError):
        return f'{path}, line {e.lineno}: {e.line.strip()!r} comes before the [{SECTION}] line; ' \
               f'all settings belong in the [{SECTION}] section'
    if isinstance(e, configparser.ParsingError):
        lineno, line = e.errors[0]
        return f'{path}, line {lineno}: cannot parse {line}; expected "key = value", ' \
               f'a [{SECTION}] line or a # comment'
    if isinstance(e, configparser.DuplicateOptionError):
        return f'{path}, line {e.lineno}: {e.option} is set a second time'
    if isinstance(e, configparser.DuplicateSectionError):
        return f'{path}, line {e.lineno}: a second [{e.section}] section; use a single one'
    return f'{path}: {e}'


def _read_file(path, named_by):
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(f'{path}: config file not found (named by {named_by})') from None
    except OSError as e:
        raise ConfigError(f'{path}: cannot read config file: {e.strerror}') from None
    except UnicodeDecodeError as e:
        raise ConfigError(f'{path}: cannot read config file: not UTF-8 text ({e.reason})') from None
    ini = configparser.ConfigParser(interpolation=None)
    try:
        ini.read_string(text, source=path)
    except configparser.Error as e:
        raise ConfigError(_syntax_error(path, e)) from None
    lines = _line_numbers(text)
    for section in ini.sections():
        if section != SECTION:
            raise ConfigError(f'{path}, line {lines[section, None]}: unknown section [{section}]; '
                              f'all settings belong in the single [{SECTION}] section')
    if SECTION not in ini:
        raise ConfigError(f'{path}: no [{SECTION}] section; put the settings below a [{SECTION}] '
                          f'line (see {EXAMPLE})')
    entries, seen = [], {}
    for key, text in ini[SECTION].items():
        line = lines.get((SECTION, key))
        where = f'{path}, line {line}' if line else path
        name = key.replace('-', '_')
        if name not in BY_NAME:
            raise ConfigError(f'{where}: unknown key {key!r}{did_you_mean(name, BY_NAME)}; '
                              f'all keys are listed in {EXAMPLE}')
        if name in seen:
            raise ConfigError(f'{where}: {key} repeats {seen[name]}, set earlier; keep only one')
        seen[name] = key
        entries.append((BY_NAME[name], key, text, where))
    return _convert(entries)


# -- loading ------------------------------------------------------------------

class MissingApp(ConfigError):
    """No application is named anywhere (argument, config file, environment)."""

    def __init__(self):
        super().__init__(
            'no application given: name the Huey instance to run as the IMPORT_PATH argument '
            '(hueyd blog.main.huey), as "app = blog.main.huey" in the [hueyd] section of the '
            'config file, or in the HUEYD_APP environment variable')


def load_config(argv=None, environ=os.environ):
    """Build the Config from ``argv`` (without the program name; None: sys.argv[1:]).

    Command-line usage errors exit with status 2 (argparse); problems in the
    config file or the environment raise ConfigError.
    """
    given = vars(build_parser().parse_args(argv))
    if 'config' in given:
        path, named_by = given.pop('config') or None, '--config'
    else:
        path, named_by = environ.get('HUEYD_CONFIG') or None, 'HUEYD_CONFIG'
    values = {opt.name: opt.default for opt in OPTIONS}
    for level in (_read_file(path, named_by) if path else {}, _read_env(environ), given):
        for name, value in level.items():
            if value and BY_NAME[name].excludes:   # e.g. -v overrides quiet from a lower level
                values[BY_NAME[name].excludes] = False
        values.update(level)
    if not values['app']:
        raise MissingApp()
    return Config(config_file=path, **values)


# -- hueyd.conf.example -------------------------------------------------------

def _show(value):
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f'{value:g}'
    if isinstance(value, tuple):
        return ', '.join(value)
    return '' if value is None else str(value)


HEADER = f"""\
# hueyd configuration file.
#
# Give it to hueyd with `hueyd --config /etc/hueyd.conf` or HUEYD_CONFIG=/etc/hueyd.conf.
# All settings belong in the single [{SECTION}] section below. Each one is shown
# commented out with its default value: remove the leading '#' and edit it.
# Keys may be written with '-' or '_' (worker-type or worker_type). Booleans take
# true/false, yes/no, on/off or 1/0. An empty value means "not set".
#
# Command-line options win over environment variables (HUEYD_<KEY>, e.g.
# HUEYD_WORKERS=4), which win over this file, which wins over the defaults.
#
# Generated from hueyd/cli/options.py; do not edit by hand, regenerate with:
#     python -m hueyd.cli.config --example > {EXAMPLE}
"""


def render_example():
    """The text of hueyd.conf.example, rendered from the schema."""
    out, section = [HEADER, f'[{SECTION}]'], None
    for opt in OPTIONS:
        if opt.section != section:
            section = opt.section
            out += ['', '#' * 72, f'# {section}', '#' * 72]
        flags = f'{opt.metavar} argument' if opt.positional else \
            ' or '.join('/'.join(f) for f in (opt.flags, opt.off) if f)
        valid = f'; {opt.kind.valid}' if opt.kind.valid else ''
        out += ['', *textwrap.wrap(f'{opt.help[0].upper()}{opt.help[1:]}.', 78,
                                   initial_indent='# ', subsequent_indent='# '),
                *textwrap.wrap(f'({flags}, {opt.env}{valid})', 78,
                               initial_indent='# ', subsequent_indent='#  '),
                f'#{opt.name} = {_show(opt.default)}'.rstrip()]
    return '\n'.join(out) + '\n'


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv == ['--example']:
        sys.stdout.write(render_example())
        return 0
    try:
        config = load_config(argv)
    except ConfigError as e:
        print(f'hueyd: {e}', file=sys.stderr)
        return EX_CONFIG
    for name, value in dataclasses.asdict(config).items():
        print(f'{name} = {value!r}')
    print(f'loglevel = {config.loglevel!r}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
