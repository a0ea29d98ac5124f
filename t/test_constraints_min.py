"""t/constraints-min.txt pins every lower bound of setup.cfg (install_requires and every
extra) exactly, so that the minimum-versions run of scripts/test (.venv-min, which
installs the `test` extra: it lists every backend's library too) really tests the
versions we promise."""

import configparser
import os

import pytest
from packaging.requirements import Requirement

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.no_services


def requirements():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(REPO, "setup.cfg"))
    lines = cfg["options"]["install_requires"].splitlines()
    for extra in cfg["options.extras_require"].values():
        lines += extra.splitlines()
    return [Requirement(line) for line in map(str.strip, lines) if line]


def pins():
    out = {}
    with open(os.path.join(REPO, "t", "constraints-min.txt")) as fh:
        for line in fh:
            line = line.split("#", 1)[0].strip()
            if line:
                req = Requirement(line)
                out[req.name.lower()] = req
    return out


def test_every_lower_bound_is_pinned_to_exactly_that_version():
    pinned = pins()
    missing = []
    for req in requirements():
        for spec in req.specifier:
            if spec.operator != ">=":
                continue
            pin = pinned.get(req.name.lower())
            if pin is None or {(s.operator, s.version) for s in pin.specifier} != {("==", spec.version)} \
                    or pin.marker != req.marker:
                missing.append(f"{req.name}=={spec.version}" + (f"; {req.marker}" if req.marker else ""))
    assert not missing, (f"t/constraints-min.txt must pin: {', '.join(missing)} -- add the line once "
                         "that version passes the minimum-versions run (QPT_MIN_VERSIONS=1 scripts/test)")


def test_nothing_is_pinned_that_setup_cfg_does_not_bound():
    bounded = {r.name.lower() for r in requirements() if any(s.operator == ">=" for s in r.specifier)}
    assert set(pins()) - bounded == set()
