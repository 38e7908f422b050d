"""The ``hueyd`` command: parse the configuration and run the master."""
import os
import sys

from hueyd.cli.config import EX_CONFIG, ConfigError, load_config


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        config = load_config(argv, os.environ)
    except ConfigError as exc:
        print('hueyd: configuration error: %s' % exc, file=sys.stderr)
        sys.exit(EX_CONFIG)
    # Imported after the configuration is known to be valid, to keep `--help` quick.
    from hueyd.daemon import logs
    from hueyd.daemon.master import Master
    logs.configure(config)
    sys.exit(Master(config, lambda: load_config(argv, os.environ), os.environ).run())


if __name__ == '__main__':
    main()
