"""config/conclave.service, the systemd unit docs/SELF_HOSTING.md installs.

Where ``systemd-analyze`` is installed (Debian's systemd), ``systemd-analyze verify`` checks it
as systemd would load it, with its ExecStart pointed at this installation's ``conclave`` (the
unit names /opt/conclave/venv, which a test machine lacks): it must load with no error and no
warning, such as an unknown key. Where it is not installed, only the second test's checks run,
by reading the unit as an INI file; the first then says so in the test's report rather than
passing as if it had verified anything.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

UNIT = Path(__file__).resolve().parent.parent / "config" / "conclave.service"
EXEC_START = "/opt/conclave/venv/bin/conclave run"


def read_unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=True, empty_lines_in_values=False)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    unit.read_string(UNIT.read_text(encoding="utf-8"))
    return unit


def test_systemd_analyze_verifies_the_unit(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        record_property("systemd-analyze", "absent: the unit was checked by parsing alone")
        print("systemd-analyze is not installed: the unit was checked by parsing alone")
        return
    conclave = Path(sys.executable).with_name("conclave")
    assert conclave.is_file(), f"{conclave} is missing: pip install -e . first"
    text = UNIT.read_text(encoding="utf-8")
    assert f"ExecStart={EXEC_START}\n" in text
    here = tmp_path / "conclave.service"
    here.write_text(text.replace(EXEC_START, f"{conclave} run"), encoding="utf-8")
    result = subprocess.run(
        [analyze, "verify", str(here)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # warnings too: an unknown key is one


def test_the_unit_runs_conclave_as_its_own_user_with_its_state_and_secrets() -> None:
    unit = read_unit()
    assert set(unit.sections()) == {"Unit", "Service", "Install"}
    service = unit["Service"]
    assert service["ExecStart"] == EXEC_START
    assert service["User"] == "conclave" and service["User"] != "root"
    assert service["StateDirectory"] == "conclave"
    assert service["WorkingDirectory"] == "/var/lib/conclave"
    assert service["Environment"] == "CONCLAVE_CONFIG=/etc/conclave/conclave.toml"
    assert service["EnvironmentFile"] == "-/etc/conclave/conclave.env"
    assert service["StandardInput"] == "null"  # the console adapter must not wait on a tty
    assert service["Restart"] == "on-failure"
    assert service["KillMode"] == "mixed"  # conclave run stops its own relay workers
    assert service["NoNewPrivileges"] == "yes" and service["CapabilityBoundingSet"] == ""
    assert "AF_NETLINK" in service["RestrictAddressFamilies"].split()
    assert unit["Unit"]["After"] == "network-online.target"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
