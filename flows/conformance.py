"""Whether a flow keeps to the declared pipeline (flows.pipeline). Pure.

A flow may only be in a table that holds flows, match the fields that table declares, write
the fields it declares, go to the tables it may go to, and use only the bits of metadata and
registers that the layout gives a meaning to. A table's miss flow is the one its declaration
says. In the tests the compiler runs this on every flow it emits (``check_flows``).
"""
from __future__ import annotations

from .flow import Flow
from .pipeline import DECLARED_BY_NAME, LAYOUT, PRIO_MISS, TABLE_BY_ID, Table


class PipelineViolation(ValueError):
    """A flow that the declared pipeline does not allow."""


def _usable_bits() -> dict[str, int]:
    """Field -> the bits of it that a flow may use today."""
    usable: dict[str, int] = {}
    for bits in LAYOUT:
        usable[bits.field] = usable.get(bits.field, 0) | (0 if bits.reserved else bits.mask)
    return usable


def _target_ids(table: Table) -> frozenset[int]:
    names = table.goes_to + ((table.miss,) if table.miss else ())
    return frozenset(DECLARED_BY_NAME[n].id for n in names if not DECLARED_BY_NAME[n].reserved)


USABLE_BITS = _usable_bits()
TARGETS = {t.id: _target_ids(t) for t in TABLE_BY_ID.values()}


def check(flow: Flow) -> None:
    """Raises PipelineViolation, naming what is wrong, unless ``flow`` keeps to the pipeline."""
    table = TABLE_BY_ID.get(flow.table)
    if table is None:
        raise PipelineViolation(f"table {flow.table} holds no flows in the pipeline: {flow}")
    for name, value in flow.match:
        if name not in table.matches:
            raise PipelineViolation(f"table {table.name} does not match {name}: {flow}")
        _check_bits(name, value, flow)
    for action in flow.actions:
        if action[0] == "set_field":
            _check_write(table, action[1], flow)
            _check_bits(action[1], action[2], flow)
        elif action[0] == "move":
            _check_write(table, action[2], flow)
    if flow.write_metadata is not None:
        _check_write(table, "metadata", flow)
        _check_bits("metadata", flow.write_metadata, flow)
    if flow.goto is not None and flow.goto not in TARGETS[table.id]:
        raise PipelineViolation(f"table {table.name} may not go to table {flow.goto}: {flow}")
    if flow.priority == PRIO_MISS and not flow.match:
        miss = DECLARED_BY_NAME[table.miss].id if table.miss else None
        if flow.actions or flow.write_metadata is not None or flow.goto != miss:
            raise PipelineViolation(f"the miss flow of table {table.name} is not the declared "
                                    f"one: {flow}")


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
