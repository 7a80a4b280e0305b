"""Whether a flow keeps to the declared pipeline (flows.pipeline). Pure.

A flow may only be in a table that holds flows, match the fields that table declares, write
the fields it declares, go to the tables it may go to, and use only the bits of metadata and
registers that the layout gives a meaning to. A table's miss flow is the one its declaration
says. In the tests the compiler runs this on every flow it emits (``check_flows``).
"""
from __future__ import annotations

from .flow import Flow
from .pipeline import (DECLARED_BY_NAME, LAYOUT, PHYSICAL_BY_NAME, PHYSICAL_TABLE_BY_ID,
                       PRIO_MISS, TABLE_BY_ID, Table)

OFPP_NORMAL = 0xFFFFFFFA


class PipelineViolation(ValueError):
    """A flow that the declared pipeline does not allow."""


def _usable_bits() -> dict[str, int]:
    """Field -> the bits of it that a flow may use today."""
    usable: dict[str, int] = {}
    for bits in LAYOUT:
        usable[bits.field] = usable.get(bits.field, 0) | (0 if bits.reserved else bits.mask)
    return usable


def _target_ids(table: Table, by_name: dict[str, Table]) -> frozenset[int]:
    names = table.goes_to + ((table.miss,) if table.miss else ())
    return frozenset(by_name[n].id for n in names if not by_name[n].reserved)


USABLE_BITS = _usable_bits()
TARGETS = {t.id: _target_ids(t, DECLARED_BY_NAME) for t in TABLE_BY_ID.values()}
PHYSICAL_TARGETS = {t.id: _target_ids(t, PHYSICAL_BY_NAME)
                    for t in PHYSICAL_TABLE_BY_ID.values()}


def check(flow: Flow) -> None:
    """Raises PipelineViolation, naming what is wrong, unless ``flow`` keeps to the pipeline."""
    _check(flow, TABLE_BY_ID, TARGETS, DECLARED_BY_NAME)


def check_physical(flow: Flow) -> None:
    """As check, for a flow of the host's physical bridge and its own pipeline."""
    _check(flow, PHYSICAL_TABLE_BY_ID, PHYSICAL_TARGETS, PHYSICAL_BY_NAME)


def _check(flow: Flow, tables: dict[int, Table], targets: dict[int, frozenset[int]],
           by_name: dict[str, Table]) -> None:
    table = tables.get(flow.table)
    if table is None:
        raise PipelineViolation(f"table {flow.table} holds no flows in the pipeline: {flow}")
    for name, value in flow.match:
        if name not in table.matches:
            raise PipelineViolation(f"table {table.name} does not match {name}: {flow}")
        _check_bits(name, value, flow)
    for action in _flat(flow.actions):
        if action[0] == "set_field":
            _check_write(table, action[1], flow)
            _check_bits(action[1], action[2], flow)
        elif action[0] == "move":
            _check_write(table, action[2], flow)
        elif action[0] == "output" and action[1] == OFPP_NORMAL and not table.normal:
            raise PipelineViolation(f"table {table.name} does not hand packets to NORMAL: "
                                    f"{flow}")
        elif action[0] == "ct" and action[3] is not None and action[3] not in targets[table.id]:
            # A recirculation is a way to another table as a goto is.
            raise PipelineViolation(f"table {table.name} may not go to table {action[3]}: "
                                    f"{flow}")
    if flow.write_metadata is not None:
        _check_write(table, "metadata", flow)
        _check_bits("metadata", flow.write_metadata, flow)
    if flow.goto is not None and flow.goto not in targets[table.id]:
        raise PipelineViolation(f"table {table.name} may not go to table {flow.goto}: {flow}")
    if flow.priority == PRIO_MISS and not flow.match:
        miss = by_name[table.miss].id if table.miss else None
        actions = (("output", OFPP_NORMAL),) if table.normal else ()
        if flow.actions != actions or flow.write_metadata is not None or flow.goto != miss:
            raise PipelineViolation(f"the miss flow of table {table.name} is not the declared "
                                    f"one: {flow}")


def _flat(actions):
    """The actions, with those a ct runs (its exec) among them."""
    for action in actions:
        yield action
        if action[0] == "ct":
            yield from action[5]


def _check_write(table: Table, name: str, flow: Flow) -> None:
    if name not in table.writes:
        raise PipelineViolation(f"table {table.name} does not write {name}: {flow}")


def _check_bits(name: str, value, flow: Flow) -> None:
    usable = USABLE_BITS.get(name)
    if usable is None:
        return
    bits = value[0] | value[1] if isinstance(value, tuple) else value
    if bits & ~usable:
        raise PipelineViolation(f"{name} bits {bits & ~usable:#x} have no meaning in the "
                                f"layout: {flow}")
