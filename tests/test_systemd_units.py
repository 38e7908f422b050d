"""The shipped systemd units carry the settings docs/deployment.md relies on.

The units are always parsed and checked here; ``systemd-analyze verify`` is an
extra check run only where the tool exists (never a skip).
"""

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parent.parent / 'systemd'

EXPECTED_SERVICE = {
    'Type': 'notify',
    'NotifyAccess': 'main',
    'ExecReload': '/bin/kill -HUP $MAINPID',
    'KillSignal': 'SIGINT',
    'KillMode': 'mixed',
    'WatchdogSec': '30',
    'Restart': 'on-failure',
    'User': 'hueyd',
    'Group': 'hueyd',
    'NoNewPrivileges': 'yes',
    'ProtectSystem': 'strict',
    'ProtectHome': 'yes',
    'PrivateTmp': 'yes',
    'PrivateDevices': 'yes',
    'ProtectKernelTunables': 'yes',
    'ProtectKernelModules': 'yes',
    'ProtectControlGroups': 'yes',
    'RestrictSUIDSGID': 'yes',
    'LockPersonality': 'yes',
    'ReadWritePaths': '/var/lib/hueyd /var/log/hueyd',
    'StateDirectory': 'hueyd',
    'LogsDirectory': 'hueyd',
}
DEFAULT_GRACEFUL_TIMEOUT = 30


def parse(path):
    # interpolation=None: '%i' and '$MAINPID' are systemd's, not configparser's.
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive.
    parser.read(path)
    return parser


def verify_with_systemd_analyze(tmp_path, text, filename):
    """Extra check where the tool exists: ExecStart is pointed at an existing
    binary, since verify rejects missing executables."""
    tool = shutil.which('systemd-analyze')
    if tool is None:
        return
    copy = tmp_path / filename
    copy.write_text(text.replace('/usr/local/bin/hueyd', sys.executable))
    proc = subprocess.run([tool, 'verify', '--man=no', str(copy)],
                          capture_output=True, text=True, timeout=60)
    # Other units on the host may add noise; only our file's lines count.
    ours = [line for line in (proc.stdout + proc.stderr).splitlines() if 'hueyd' in line]
    assert proc.returncode == 0 and not ours, proc.stdout + proc.stderr


@pytest.mark.parametrize('filename, config, instance_name', [
    ('hueyd.service', '/etc/hueyd/hueyd.conf', 'hueyd.service'),
    ('hueyd@.service', '/etc/hueyd/%i.conf', 'hueyd@blog.service'),
])
def test_unit(tmp_path, filename, config, instance_name):
    path = UNITS / filename
    unit = parse(path)
    assert unit.sections() == ['Unit', 'Service', 'Install']
    service = unit['Service']
    for key, value in EXPECTED_SERVICE.items():
        assert service.get(key) == value, key
    assert service['ExecStart'] == f'/usr/local/bin/hueyd --config {config}'
    assert int(service['TimeoutStopSec']) > DEFAULT_GRACEFUL_TIMEOUT + 10
    assert int(service['RestartSec']) > 0
    assert service['WorkingDirectory'].startswith('/var/lib/hueyd')
    assert unit['Install']['WantedBy'] == 'multi-user.target'
    assert unit['Unit']['Description']
    verify_with_systemd_analyze(tmp_path, path.read_text(), instance_name)
