"""The rooms' imports follow docs/architecture.md: each room imports only the rooms its row
names (and itself); ``cni/``, which runtimes execute on nodes, only the standard library."""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
from tests.helpers import ROOT

ROW = re.compile(r"^\| `(\w+)/` \| .* \| (.*) \|$")


def declared() -> dict[str, set[str]]:
    rooms = {}
    for line in (Path(ROOT) / "docs" / "architecture.md").read_text().splitlines():
        if found := ROW.match(line):
            rooms[found.group(1)] = set(re.findall(r"`(\w+)/`", found.group(2)))
    return rooms


ROOMS = declared()


def imported(room: str) -> dict[str, str]:
    """{top-level module: the first file importing it} over the room's files."""
    found = {}
    for path in sorted((Path(ROOT) / room).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def test_the_table_names_every_room():
    assert {"cli", "cni", "api", "controller", "flows", "model", "openflow"} <= ROOMS.keys()


@pytest.mark.parametrize("room", sorted(ROOMS))
def test_a_room_imports_only_the_rooms_below_it_that_it_names(room):
    wrong = {name: where for name, where in imported(room).items()
             if name in ROOMS and name != room and name not in ROOMS[room]}
    assert wrong == {}, f"{room}/ imports rooms its row does not name: {wrong}"


def test_the_cni_plugin_imports_only_the_standard_library():
    outside = {name: where for name, where in imported("cni").items()
               if name != "cni" and name not in sys.stdlib_module_names
               and name != "__future__"}
    assert outside == {}
