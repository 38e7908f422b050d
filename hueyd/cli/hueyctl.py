"""``hueyctl``: inspect a hueyd deployment from any machine that reaches its storage.

    hueyctl check-config [hueyd options]   validate settings exactly as hueyd would (exit 78 if bad)
    hueyctl info --app blog.main.huey      queue, schedule and result counts
"""
import argparse
import json
import os
import sys

from hueyd.cli.config import EX_CONFIG, ConfigError, load_config


def check_config(hueyd_args):
    try:
        config = load_config(hueyd_args, os.environ)
    except ConfigError as exc:
        print('hueyctl: configuration error: %s' % exc, file=sys.stderr)
        return EX_CONFIG
    print('configuration is valid%s' % (' (%s)' % config.config_file if config.config_file else ''))
    for key, value in vars(config).items():
        print('  %s = %s' % (key, value))
    return 0


def info(args):
    from hueyd.daemon.app import AppImportError, load_app
    try:
        app_path = args.app or load_config(
            ['--config', args.config] if args.config else [], os.environ).app
        huey = load_app(app_path)
    except (AppImportError, ConfigError) as exc:
        print('hueyctl: %s' % exc, file=sys.stderr)
        return EX_CONFIG if isinstance(exc, ConfigError) else 1
    figures = {
        'app': app_path,
        'storage': type(huey.storage).__name__,
        'queued': huey.pending_count(),
        'scheduled': huey.scheduled_count(),
        'results': huey.result_count(),
        'tasks': huey.registered_tasks,
    }
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print('%-10s %s' % (key, ', '.join(value) if isinstance(value, list) else value))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog='hueyctl', description=__doc__.split('\n')[0])
    commands = parser.add_subparsers(dest='command', required=True)
    check = commands.add_parser('check-config', help='validate hueyd settings; exit 78 if invalid')
    check.add_argument('hueyd_args', nargs='*', metavar='HUEYD_ARG',
                       help='the options and IMPORT_PATH hueyd would be given')
    show = commands.add_parser('info', help='queue, schedule and result counts')
    show.add_argument('--app', help='import path of the Huey instance (blog.main.huey)')
    show.add_argument('--config', help="read the app from this hueyd config file's app key")
    show.add_argument('--json', action='store_true', help='print JSON for scripts')
    show.set_defaults(run=info)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['check-config']:
        # Everything after it belongs to hueyd's own parser, dashes included.
        sys.exit(check_config(argv[1:]))
    args = build_parser().parse_args(argv)
    sys.exit(args.run(args))


if __name__ == '__main__':
    main()
