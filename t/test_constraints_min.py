"""t/constraints-min.txt pins every lower bound of pyproject.toml (dependencies and every
extra) exactly, so that the minimum-versions run of scripts/test (.venv-min, which
installs the `test` extra: it lists every backend's library too) really tests the
versions we promise."""

import os
import tomllib

import pytest
from packaging.requirements import Requirement

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.no_services


def project():
    """pyproject.toml's [project] table (also used by t/test_extras_optional.py)."""
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as fh:
        return tomllib.load(fh)["project"]


def requirements():
    meta = project()
    lines = list(meta["dependencies"])
    for extra in meta["optional-dependencies"].values():
        lines += extra
    return [Requirement(line) for line in lines]


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


def test_nothing_is_pinned_that_pyproject_does_not_bound():
    bounded = {r.name.lower() for r in requirements() if any(s.operator == ">=" for s in r.specifier)}
    assert set(pins()) - bounded == set()
