"""The reliability report: every fault test adds one row; the session prints the table.

A row counts what a fault did to the stream. Label-flow faults fill it with
:func:`account` from what is on the topics; the others (updater, version records,
start-up) fill the columns that apply and leave the rest ``None`` (printed as ``-``).
The target row is the same for every fault: lost 0, duplicates after dedup 0, crashes 0.

>>> rows = [Row("fault", inputs=3, labels=4, lost=0, duplicates=0, dead_lettered=1, crashes=0)] * 2
>>> print(table(rows).splitlines()[2])
| fault | 2 | 6 | 8 | 0 | 0 | 2 | 0 |
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict

import orjson

COLUMNS = ("fault", "runs", "inputs", "labels", "lost", "duplicates after dedup", "dead-lettered / rejected",
           "crashes")


@dataclasses.dataclass(frozen=True)
class Row:
    """One run of one fault.

    ``duplicates`` counts inputs that dedup by (topic, partition, offset) cannot reduce to
    one outcome: labelled and dead-lettered, or labelled with different (cluster, version).
    ``crashes`` counts unexpected exits and tracebacks (the injected kills are not crashes).
    """

    fault: str
    inputs: int | None = None
    labels: int | None = None
    lost: int | None = None
    duplicates: int | None = None
    dead_lettered: int | None = None
    crashes: int = 0


def source_offset(message) -> tuple[int, int]:
    """(partition, offset) of the input a label message answers: the downstream dedup key."""
    source = orjson.loads(message.value())["source"]
    return source["partition"], source["offset"]


def dead_offset(message) -> tuple[int, int]:
    """(partition, offset) of the input a dead-letter message holds."""
    headers = dict(message.headers())
    return int(headers["source-partition"]), int(headers["source-offset"])


def account(fault: str, inputs: set[tuple[int, int]], labels: list, dead: list = (), crashes: int = 0) -> Row:
    """The row for a label-flow fault: ``inputs`` are the produced (partition, offset) pairs."""
    outcomes = defaultdict(set)
    for message in labels:
        label = orjson.loads(message.value())
        outcomes[source_offset(message)].add((label["cluster"], label["version"]))
    for message in dead:
        outcomes[dead_offset(message)].add("dead-letter")
    return Row(fault, inputs=len(inputs), labels=len(labels), lost=len(inputs - outcomes.keys()),
               duplicates=sum(len(outcomes[key]) > 1 for key in inputs & outcomes.keys()),
               dead_lettered=len(dead), crashes=crashes)


def table(rows: list[Row]) -> str:
    """A markdown table: one line per fault, runs summed (``-`` where a column does not apply)."""
    runs = Counter(row.fault for row in rows)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for fault in runs:
        mine = [row for row in rows if row.fault == fault]
        cells = [fault, str(runs[fault])]
        for field in ("inputs", "labels", "lost", "duplicates", "dead_lettered", "crashes"):
            values = [getattr(row, field) for row in mine]
            cells.append("-" if None in values else str(sum(values)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
