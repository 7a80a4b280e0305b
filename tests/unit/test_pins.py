"""constraints.txt: every dependency pinned, within pyproject's ranges, used by every install."""
from __future__ import annotations

import importlib.metadata
import os
import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.helpers import ROOT


def read(path: str) -> str:
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def pins() -> dict[str, Version]:
    found: dict[str, Version] = {}
    for line in read("constraints.txt").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and name.strip() == name and version.strip() == version, line
        assert canonicalize_name(name) not in found, f"{name} pinned twice"
        found[canonicalize_name(name)] = Version(version)
    return found


def requirements() -> list[Requirement]:
    pyproject = tomllib.loads(read("pyproject.toml"))
    project = pyproject["project"]
    texts = project["dependencies"] + pyproject["build-system"]["requires"]
    for extra in project["optional-dependencies"].values():
        texts += extra
    return [Requirement(text) for text in texts]


@pytest.mark.parametrize("requirement", requirements(), ids=str)
def test_each_requirement_is_pinned_within_its_range(requirement):
    pinned = pins().get(canonicalize_name(requirement.name))
    assert pinned is not None, f"{requirement.name} is not in constraints.txt (make pins)"
    assert requirement.specifier.contains(pinned, prereleases=True), \
        f"{requirement.name}=={pinned} is outside pyproject's {requirement.specifier}"


@pytest.mark.parametrize("package", ["os-ken", "ovs"])
def test_the_packages_whose_insides_are_replaced_are_the_pinned_ones(package):
    """controller/os_ken_fixes.py and ovsdb/poll.py are tested here against these."""
    assert Version(importlib.metadata.version(package)) == pins()[package]


@pytest.mark.parametrize("path", ["Makefile", "Dockerfile", "scripts/install-bench-deps.sh"])
def test_every_install_takes_the_pins(path):
    text = re.sub(r"\\\n", " ", read(path))
    installs = [line for line in text.splitlines() if re.search(r"\bpip\"? install\b", line)]
    assert installs
    for line in installs:
        assert "constraints.txt" in line or "$(PINS)" in line, line
        if "-e " in line or "/opt/ovsfabric" in line.split("install", 1)[1]:
            # ovsfabric itself is built: its build backend is pinned too
            assert "--build-constraint" in line, line


def test_a_change_of_pins_rebuilds_the_venv():
    assert re.search(r"^\$\(STAMP\):.*\$\(PINS\)", read("Makefile"), re.M)
    assert re.search(r"^PINS := constraints\.txt$", read("Makefile"), re.M)
