"""What every choice of a cell space costs: parameters, MACs and (optionally) CPU latency per (node, input, op).

Where it sits
    Under every budgeted search, export and zero-shot (:mod:`nni_base.hardware`): the expected cost of α and the
    cost of an exported sample are sums over this table. Built once per space and image size by
    :func:`build_cost_table` (or loaded from a file written by ``python -m nni_base.cli.latency``).

Why a table is exact here
    In NNI's DARTS space an architecture's operations are separate modules, one per (cell, node, slot), and every
    cell's output concatenates all its nodes, so parameters and MACs are a fixed part (stem, preprocessors,
    classifier) plus one term per slot; the term depends on the slot's node, the input it reads (in a reduction
    cell the cell inputs are read with stride 2) and its operation, not on which of the node's slots it is. All
    cells of a label share their choices, so a label's table entry is summed over its cells. The table is read off
    frozen networks: each candidate operation's modules are attributed to their slot with forward hooks (parameters
    by module, MACs by the convolutions and linear layers that run, as :mod:`nni_base.space.macs` counts them), and
    the fixed part is what is left of the whole network's count. Latency is measured per operation module in
    isolation at the input shape it saw (one torch thread, median of repeats, as nn-Meter and HELP's lookup tables
    do), the fixed part as the rest of a whole network's measured latency; it is an estimate, checked against whole
    networks by ``benchmarks/latency_table.py``.

    >>> table = build_cost_table(DartsTaskSpace(width=8, num_cells=3, num_classes=5), (3, 16, 16))
    >>> table.cost_of(sample)['macs'] == count_macs(space.freeze(sample), (3, 16, 16))
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from nni.nas.nn.pytorch import Cell
from torch import nn

from ..prior import space_arguments
from ..space.costs import cpu_latency_ms, machine_signature
from ..space.macs import count_parameters, layer_macs

__all__ = ['METRICS', 'CostTable', 'build_cost_table', 'CostTableError']

#: The costs a table can hold, in the units :class:`~nni_base.hardware.Budget` takes.
METRICS = ('params', 'macs', 'latency_ms')
FORMAT_VERSION = 1


class CostTableError(ValueError):
    """A cost table file or dictionary that is not one this version reads (the message says what is wrong)."""


@dataclass
class CostTable:
    """Costs of a cell space: ``fixed[metric]`` plus ``slots[label][metric][node - num_predecessors][input][op]``.

    ``op_names[label]`` orders the last axis; an input a node cannot read (``input >= node``) holds ``None``.
    ``input_size`` is the (C, H, W) image the costs are for; ``machine`` where latency was measured (if it was).
    """

    metrics: tuple[str, ...]
    fixed: dict[str, float]
    slots: dict[str, dict[str, list[list[list[float | None]]]]]
    op_names: dict[str, tuple[str, ...]]
    num_predecessors: dict[str, int]
    input_size: tuple[int, int, int]
    space: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] | None = None

    def slot_cost(self, label: str, node: int, pred: int, op: str, metric: str) -> float:
        """Cost of one slot of ``node`` reading input ``pred`` through ``op`` (summed over the label's cells)."""
        value = self.slots[label][metric][node - self.num_predecessors[label]][pred][self.op_names[label].index(op)]
        if value is None:
            raise ValueError(f'Node {node} of the {label!r} cells cannot read input {pred} (inputs are 0..{node - 1}).')
        return value

    def entries_cost(self, entries: Mapping[str, Any]) -> dict[str, float]:
        """Cost of the slots a partial sample sets (``'{label}/op_{i}_{k}'`` with its ``input_{i}_{k}``)."""
        total = dict.fromkeys(self.metrics, 0.0)
        for key, op in entries.items():
            label, _, choice = key.rpartition('/')
            if not choice.startswith('op_'):
                continue
            node = int(choice[3:].split('_')[0])
            pred = int(entries[f'{label}/input{choice[2:]}'][0])
            for metric in self.metrics:
                total[metric] += self.slot_cost(label, node, pred, op, metric)
        return total

    def cost_of(self, sample: Mapping[str, Any]) -> dict[str, float]:
        """Every metric of the architecture ``sample`` (a whole NNI sample of the space)."""
        slots = self.entries_cost(sample)
        return {metric: self.fixed[metric] + slots[metric] for metric in self.metrics}

    def with_latency_of(self, measured: CostTable, where: str = 'the latency table') -> CostTable:
        """This table with the latency column of ``measured`` (a table of the same space and image size).

        Parameters and MACs stay this table's (exact for the user's space, class count included); only the
        measured latency is taken, and only from a table of the same cells, width, depth and image size.
        """
        if 'latency_ms' not in measured.metrics:
            raise CostTableError(f'{where} holds no latency (it has {list(measured.metrics)}): build it with latency.')
        mine = {k: v for k, v in (self.space.get('arguments') or {}).items() if k != 'num_classes'}
        theirs = {k: v for k, v in (measured.space.get('arguments') or {}).items() if k != 'num_classes'}
        same_cells = (measured.op_names, measured.num_predecessors) == (self.op_names, self.num_predecessors)
        same_nodes = all(len(measured.slots[k]['latency_ms']) == len(v['macs']) for k, v in self.slots.items())
        if not (same_cells and same_nodes) or mine != theirs or tuple(measured.input_size) != tuple(self.input_size):
            raise CostTableError(
                f'{where} was measured on another space or image size ({_described(measured)}) than this search '
                f'({_described(self)}): rebuild it for this space with python -m nni_base.cli.latency.'
            )
        slots = {
            label: {**per_metric, 'latency_ms': measured.slots[label]['latency_ms']}
            for label, per_metric in self.slots.items()
        }
        return CostTable(
            metrics=(*self.metrics, 'latency_ms') if 'latency_ms' not in self.metrics else self.metrics,
            fixed={**self.fixed, 'latency_ms': measured.fixed['latency_ms']},
            slots=slots,
            op_names=self.op_names,
            num_predecessors=self.num_predecessors,
            input_size=self.input_size,
            space=self.space,
            machine=measured.machine,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            'format': 'nni-base cost table',
            'version': FORMAT_VERSION,
            'metrics': list(self.metrics),
            'fixed': self.fixed,
            'slots': self.slots,
            'op_names': {label: list(ops) for label, ops in self.op_names.items()},
            'num_predecessors': self.num_predecessors,
            'input_size': list(self.input_size),
            'space': self.space,
            'machine': self.machine,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = 'the cost table') -> CostTable:
        """A validated table; anything damaged is a :class:`CostTableError` that names what and where."""
        if not isinstance(data, dict) or data.get('format') != 'nni-base cost table':
            raise CostTableError(
                f'{where} is not an nni-base cost table: build one with python -m nni_base.cli.latency.'
            )
        if data.get('version') != FORMAT_VERSION:
            raise CostTableError(
                f'{where} has format version {data.get("version")!r}; this nni-base reads version {FORMAT_VERSION}: '
                'rebuild it with python -m nni_base.cli.latency.'
            )
        try:
            table = cls(
                metrics=tuple(data['metrics']),
                fixed={m: float(v) for m, v in data['fixed'].items()},
                slots=data['slots'],
                op_names={label: tuple(ops) for label, ops in data['op_names'].items()},
                num_predecessors={label: int(n) for label, n in data['num_predecessors'].items()},
                input_size=tuple(int(v) for v in data['input_size']),  # type: ignore[arg-type]
                space=dict(data.get('space') or {}),
                machine=data.get('machine'),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise CostTableError(f'{where} is damaged ({type(error).__name__}: {error}): rebuild it.') from None
        table.check(where)
        return table

    def check(self, where: str = 'the cost table') -> None:
        """Every metric known and present, every entry a finite number >= 0 (or None where no input exists)."""
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise CostTableError(f'{where} holds unknown metrics {unknown} (known: {list(METRICS)}): rebuild it.')
        for metric in self.metrics:
            _check_number(self.fixed.get(metric), f'{where}: fixed {metric}')
        for label, per_metric in self.slots.items():
            ops = self.op_names.get(label)
            if ops is None or label not in self.num_predecessors:
                raise CostTableError(f'{where}: cell type {label!r} has no op names or predecessors: rebuild it.')
            for metric in self.metrics:
                nodes = per_metric.get(metric)
                if not isinstance(nodes, list) or not nodes:
                    raise CostTableError(f'{where}: no {metric} entries for the {label!r} cells: rebuild it.')
                for offset, inputs in enumerate(nodes):
                    node = offset + self.num_predecessors[label]
                    for pred, row in enumerate(inputs):
                        if not isinstance(row, list) or len(row) != len(ops):
                            raise CostTableError(f'{where}: {label} node {node} input {pred}: {len(ops)} ops expected.')
                        for op, value in zip(ops, row):
                            if pred < node:
                                _check_number(value, f'{where}: {label} node {node} input {pred} {op} {metric}')


def _described(table: CostTable) -> str:
    arguments = ', '.join(f'{k}={v}' for k, v in (table.space.get('arguments') or {}).items())
    cells = ', '.join(f'{label}: {len(ops)} ops' for label, ops in table.op_names.items())
    return f'{arguments or "unknown arguments"}; {cells}; images {tuple(table.input_size)}'


def _check_number(value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise CostTableError(f'{what} is {value!r}, not a finite number >= 0: the table is damaged, rebuild it.')


# ---- building a table from a space ------------------------------------------------------------------------------
def _cells(net: nn.Module) -> list[Cell]:
    return [m for m in net.modules() if isinstance(m, Cell)]


def _shape_of(space: nn.Module) -> dict[str, tuple[tuple[str, ...], int, int, int]]:
    """label → (op names, num_predecessors, num_nodes, slots per node) of the space's (unfrozen) cells."""
    shapes = {}
    for cell in _cells(space):
        label = str(cell.label)
        ops = tuple(str(name) for name in cell.ops[0][0].names)  # a LayerChoice's candidate names
        shapes.setdefault(label, (ops, int(cell.num_predecessors), len(cell.ops), len(cell.ops[0])))
    if not shapes:
        raise ValueError(
            f'{type(space).__name__} has no NNI Cell: costs per choice are defined for DARTS-style cell spaces '
            '(nni_base.DartsTaskSpace, NNI DARTS).'
        )
    return shapes


def _uniform_sample(shapes: Mapping[str, tuple], op_index: int, pred: int) -> dict[str, Any]:
    """Every slot of every node runs op ``op_index`` of its label and reads input ``min(pred, node - 1)``."""
    sample: dict[str, Any] = {}
    for label, (ops, num_pred, num_nodes, per_node) in shapes.items():
        for node in range(num_pred, num_pred + num_nodes):
            for k in range(per_node):
                sample[f'{label}/op_{node}_{k}'] = ops[op_index % len(ops)]
                sample[f'{label}/input_{node}_{k}'] = [min(pred, node - 1)]
    return sample


@torch.no_grad()
def _measure(
    net: nn.Module, input_size: Sequence[int], latency: bool, repeats: int, whole_latency: bool
) -> tuple[dict, dict[str, float]]:
    """Per (label, node, input, op): costs summed over the label's cells; and the whole network's costs."""
    owner: dict[int, tuple[str, int, int]] = {}  # id(module) -> (label, node, slot) of the slot it belongs to
    slot_modules: dict[tuple[str, int, int], list[tuple[nn.Module, int]]] = {}
    for cell in _cells(net):
        for offset, slots in enumerate(cell.ops):
            for k, module in enumerate(slots):
                key = (str(cell.label), offset + int(cell.num_predecessors), k)
                slot_modules.setdefault(key, []).append((module, id(cell)))
                for sub in module.modules():
                    owner[id(sub)] = key
    macs: dict[Any, float] = {}
    shapes: dict[int, tuple[int, ...]] = {}

    def count(module: nn.Module, inputs, output) -> None:
        key = owner.get(id(module))
        macs[key] = macs.get(key, 0) + layer_macs(module, output)

    def remember(module: nn.Module, inputs) -> None:
        shapes[id(module)] = tuple(inputs[0].shape[1:])

    handles = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    handles += [m.register_forward_pre_hook(remember) for ms in slot_modules.values() for m, _ in ms]
    net.eval()
    try:
        net(torch.zeros(1, *input_size))
    finally:
        for handle in handles:
            handle.remove()
    per_slot = {}
    for key, modules in slot_modules.items():
        costs = {
            'params': float(sum(p.numel() for m, _ in modules for p in m.parameters())),
            'macs': float(macs.get(key, 0)),
        }
        if latency and (key[2] == 0 or whole_latency):  # slot 0 stands for its node's slots
            costs['latency_ms'] = sum(cpu_latency_ms(m, shapes[id(m)], repeats=repeats) for m, _ in modules)
        per_slot[key] = costs
    whole = {'params': float(count_parameters(net)), 'macs': float(sum(macs.values()))}
    if whole_latency:
        whole['latency_ms'] = cpu_latency_ms(net, tuple(input_size), repeats=repeats)
    return per_slot, whole


def build_cost_table(
    space: nn.Module, input_size: Sequence[int], *, latency: bool = False, repeats: int = 20
) -> CostTable:
    """The :class:`CostTable` of a DARTS-style cell ``space`` for ``input_size`` (C, H, W) images.

    Freezes one network per (operation, input position): every slot runs the operation and reads that input (or
    the latest one its node has), so ``len(ops) x (inputs of the last node)`` networks cover every entry. With
    ``latency=True`` each operation module is also timed (one thread, ``repeats`` runs) and the fixed part is
    measured on the first network.
    """
    input_size = tuple(int(v) for v in input_size)
    if len(input_size) != 3 or min(input_size) < 1:
        raise ValueError(f'input_size is the (channels, height, width) of one image, got {input_size}.')
    shapes = _shape_of(space)
    metrics = METRICS if latency else METRICS[:2]
    slots = {
        label: {m: [[[None] * len(ops) for _ in range(num_pred + n)] for n in range(num_nodes)] for m in metrics}
        for label, (ops, num_pred, num_nodes, _) in shapes.items()
    }
    most_inputs = max(num_pred + num_nodes - 1 for _, num_pred, num_nodes, _ in shapes.values())
    fixed: dict[str, float] | None = None
    for op_index in range(max(len(ops) for ops, *_ in shapes.values())):
        for pred in range(most_inputs):
            sample = _uniform_sample(shapes, op_index, pred)
            per_slot, whole = _measure(space.freeze(sample), input_size, latency, repeats, latency and fixed is None)
            for (label, node, k), costs in per_slot.items():
                if k != 0 or pred >= node or op_index >= len(shapes[label][0]):
                    continue  # slot 0 stands for the node's slots (they cost the same); inputs past the node clamp
                for metric in metrics:
                    slots[label][metric][node - shapes[label][1]][pred][op_index] = costs[metric]
            if fixed is None:
                fixed = {m: whole[m] - sum(costs[m] for costs in per_slot.values()) for m in metrics}
    assert fixed is not None
    return CostTable(
        metrics=metrics,
        fixed={m: max(v, 0.0) for m, v in fixed.items()},
        slots=slots,
        op_names={label: ops for label, (ops, *_) in shapes.items()},
        num_predecessors={label: num_pred for label, (_, num_pred, *_) in shapes.items()},
        input_size=input_size,  # type: ignore[arg-type]
        space={'class': f'{type(space).__module__}.{type(space).__qualname__}', 'arguments': space_arguments(space)},
        machine=machine_signature() if latency else None,
    )
