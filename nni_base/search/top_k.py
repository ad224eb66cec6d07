"""Top-k export: the k most probable distinct architectures under α, as standard NNI samples.

Where it sits
    After a search (:meth:`nni_base.BaseStrategy.export_top_models`, ``list_models(limit=k)``) and after
    zero-shot generation (:func:`nni_base.api.zero_shot`). The top-1 is exactly what ``export()`` gives.

How
    An architecture is a product of independent per-node choices (DARTS parameterisation: which
    ``num_inputs`` incoming edges a node keeps and which operation each of them runs; slot
    parameterisation: one (input, operation) pair per slot). Its score is the sum of the log-probabilities
    of the chosen operations under ``softmax(α)`` of each edge (``none`` included in the normaliser, as the
    DARTS export reads the probabilities). The DARTS export rule — best non-``none`` op per edge, then the
    ``num_inputs`` edges whose best op is most probable — is the maximiser of this score, so the ranking
    extends the export rule. The k best products are enumerated best-first (a heap over per-component rank
    vectors), never materialising the whole space.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from nni.mutable import Categorical

from ..space.genotype import DARTS_OPS

__all__ = [
    'CellShape',
    'architecture_components',
    'architecture_log_prob',
    'best_products',
    'product_sample',
    'cell_shapes',
    'darts_cell_shapes',
    'random_architecture',
    'plain_choices',
    'shapes_from_signature',
    'top_k_architectures',
    'rank_architectures',
    'check_top_k',
]

#: One per-node (or per-slot) choice: its log-probability and the sample entries it sets.
Choice = tuple[float, dict[str, Any]]


@dataclass(frozen=True)
class CellShape:
    """What the top-k enumeration needs to know of one cell type (all cells of a label share α)."""

    label: str
    op_names: tuple[str, ...]
    num_nodes: int
    num_predecessors: int
    num_inputs: int
    parameterization: str = 'darts'


def cell_shapes(cells: Iterable[Any]) -> list[CellShape]:
    """One :class:`CellShape` per label of a supernet's :class:`~nni_base.space.gumbel_cell.GumbelMixedCell` s."""
    from ..space.slot_cell import SlotGumbelCell

    shapes: dict[str, CellShape] = {}
    for cell in cells:
        if cell.label not in shapes:
            shapes[cell.label] = CellShape(
                str(cell.label),
                tuple(cell.op_names),
                int(cell.num_nodes),
                int(cell.num_predecessors),
                int(cell.num_ops_per_node),
                'slot' if isinstance(cell, SlotGumbelCell) else 'darts',
            )
    return list(shapes.values())


def darts_cell_shapes(
    num_nodes: int = 4, ops: Sequence[str] = DARTS_OPS, labels: Sequence[str] = ('normal', 'reduce')
) -> list[CellShape]:
    """The cell shapes of a DARTS space (:class:`~nni_base.DartsTaskSpace`, NNI's ``DARTS``) without building it."""
    return [CellShape(label, tuple(ops), num_nodes, 2, 2) for label in labels]


def random_architecture(
    shapes: Sequence[CellShape], rng: random.Random, choices: Mapping[str, Sequence[Any]] | None = None
) -> dict[str, Any]:
    """A uniformly random NNI sample: per node ``num_inputs`` distinct inputs (as many as exist), an op each;
    a uniform value of each choice outside the cells.

    >>> sample = random_architecture(darts_cell_shapes(), random.Random(0))
    >>> sample['normal/op_2_0'] in DARTS_OPS, sample['normal/input_2_0']
    (True, [0])
    """
    sample: dict[str, Any] = {label: rng.choice(list(values)) for label, values in (choices or {}).items()}
    for s in shapes:
        for node in range(s.num_predecessors, s.num_predecessors + s.num_nodes):
            preds = sorted(rng.sample(range(node), min(s.num_inputs, node)))
            for k in range(s.num_inputs):
                sample[f'{s.label}/op_{node}_{k}'] = rng.choice(s.op_names)
                sample[f'{s.label}/input_{node}_{k}'] = [preds[k % len(preds)]]
    return sample


def plain_choices(
    space: Any, alphas: Mapping[str, torch.Tensor], cell_labels: Iterable[str]
) -> dict[str, list[Any]] | None:
    """Candidate values of every logit vector outside the DARTS-style cells (label → values, in α's order).

    ``space``: the supernet's model space (its ``simplify()`` lists the choices). ``None`` when one of the
    logit vectors is not a plain categorical over its values (multi-input or NNI-cell choices), which the
    top-k enumeration and the conditioning's architecture features do not cover.
    """
    mutables = {str(label): mutable for label, mutable in space.simplify().items()}
    cells = {str(label) for label in cell_labels}
    choices: dict[str, list[Any]] = {}
    for label, alpha in alphas.items():
        if str(label) in cells:
            continue
        mutable = mutables.get(str(label))
        if not isinstance(mutable, Categorical) or len(mutable.values) != alpha.numel():
            return None
        choices[str(label)] = list(mutable.values)
    return choices


def shapes_from_signature(signature: Mapping[str, Sequence[Any]], parameterization: str = 'darts') -> list[CellShape]:
    """Cell shapes read from a prior's space signature (``'{label}/op_{node}_{k}'`` choices), no supernet needed."""
    cells: dict[str, dict[str, Any]] = {}
    for key, values in signature.items():
        label, _, choice = key.rpartition('/')
        if not choice.startswith('op_'):
            continue
        node, slot = (int(v) for v in choice[3:].split('_'))
        info = cells.setdefault(label, {'ops': tuple(str(v) for v in values), 'nodes': set(), 'slots': set()})
        info['nodes'].add(node)
        info['slots'].add(slot)
    if not cells:
        raise ValueError('The space signature has no cell operation choices (label/op_i_k): not a cell space.')
    return [
        CellShape(label, info['ops'], len(info['nodes']), min(info['nodes']), len(info['slots']), parameterization)
        for label, info in cells.items()
    ]


def check_top_k(top_k: Any) -> int:
    """``top_k`` as an int >= 1, or a ``ValueError`` that says what is accepted."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f'top_k must be an integer >= 1 (how many distinct architectures to export), got {top_k!r}.')
    return top_k


def _darts_components(shape: CellShape, alpha: torch.Tensor, k: int) -> list[list[Choice]]:
    from ..space.gumbel_cell import edge_index

    n_ops = len(shape.op_names)
    logp = F.log_softmax(alpha.detach().float().cpu(), dim=-1)[:, :n_ops]
    keep = min(k, n_ops)  # the k best products need at most the k best ops of each factor
    components = []
    for node in range(shape.num_predecessors, shape.num_predecessors + shape.num_nodes):
        best_ops = {}
        for pred in range(node):
            values, idx = logp[edge_index(node, pred, shape.num_predecessors)].topk(keep)
            best_ops[pred] = list(zip(values.tolist(), idx.tolist()))
        choices: list[tuple[float, tuple[int, ...], dict[str, Any]]] = []
        for preds in itertools.combinations(range(node), min(shape.num_inputs, node)):
            for ops in itertools.product(*(best_ops[p] for p in preds)):
                entries: dict[str, Any] = {}
                for slot in range(shape.num_inputs):  # as derive_cell: slots cycle over the kept edges
                    j = slot % len(preds)
                    entries[f'{shape.label}/op_{node}_{slot}'] = shape.op_names[ops[j][1]]
                    entries[f'{shape.label}/input_{node}_{slot}'] = [preds[j]]
                choices.append((sum(v for v, _ in ops), preds, entries))
        choices.sort(key=lambda c: (-c[0], c[1]))
        components.append([(score, entries) for score, _, entries in choices[:k]])
    return components


def _slot_components(shape: CellShape, alpha: torch.Tensor, k: int) -> list[list[Choice]]:
    from ..space.slot_cell import pair_column, slot_index, valid_pairs

    n_ops = len(shape.op_names)
    mask = valid_pairs(shape.num_nodes, shape.num_inputs, shape.num_predecessors, n_ops)
    logp = F.log_softmax(alpha.detach().float().cpu().masked_fill(~mask, float('-inf')), dim=-1)
    components = []
    for node in range(shape.num_predecessors, shape.num_predecessors + shape.num_nodes):
        for slot in range(shape.num_inputs):
            row = logp[slot_index(node, slot, shape.num_predecessors, shape.num_inputs)]
            pairs = [(float(row[pair_column(j, o, n_ops)]), j, o) for j in range(node) for o in range(n_ops)]
            pairs.sort(key=lambda c: (-c[0], c[1], c[2]))
            components.append(
                [
                    (
                        score,
                        {
                            f'{shape.label}/op_{node}_{slot}': shape.op_names[o],
                            f'{shape.label}/input_{node}_{slot}': [j],
                        },
                    )
                    for score, j, o in pairs[:k]
                ]
            )
    return components


def _choice_component(label: str, values: Sequence[Any], alpha: torch.Tensor, k: int) -> list[Choice]:
    """A choice outside the cells (LayerChoice, Repeat depth, value choice): one categorical over its values."""
    logp = F.log_softmax(alpha.detach().float().cpu(), dim=-1)
    order = sorted(range(len(values)), key=lambda i: (-float(logp[i]), i))[:k]
    return [(float(logp[i]), {label: values[i]}) for i in order]


def architecture_components(
    shapes: Sequence[CellShape],
    alphas: Mapping[str, torch.Tensor],
    keep: int,
    choices: Mapping[str, Sequence[Any]] | None = None,
) -> list[list[Choice]]:
    """The independent per-node (or per-slot, or per-choice) options an architecture is a product of, each as
    (log-probability, sample entries), best first, at most ``keep`` per component (enough for the ``keep`` best
    products)."""
    alphas = {str(label): alpha for label, alpha in alphas.items()}  # NNI's label objects and plain strings alike
    components: list[list[Choice]] = [
        _choice_component(str(label), values, alphas[str(label)], keep) for label, values in (choices or {}).items()
    ]
    for shape in shapes:
        if shape.label not in alphas:
            raise KeyError(f'No architecture logits for cell type {shape.label!r} (have {sorted(alphas)}).')
        build = _slot_components if shape.parameterization == 'slot' else _darts_components
        components += build(shape, alphas[shape.label], keep)
    return components


def best_products(
    components: Sequence[Sequence[Choice]],
    top_k: int,
    keep: Callable[[tuple[int, ...]], bool] | None = None,
    max_visits: int | None = None,
) -> list[tuple[tuple[int, ...], float]]:
    """The ``top_k`` best products of ``components`` (option indices, summed score), best first, enumerated
    best-first over rank vectors (a heap) without materialising the space; with ``keep``, only products it accepts
    are returned (the others are still visited in score order, at most ``max_visits`` products in all)."""
    start = (0,) * len(components)

    def score(index: tuple[int, ...]) -> float:
        return sum(components[c][i][0] for c, i in enumerate(index))

    heap = [(-score(start), start)]
    seen = {start}
    result: list[tuple[tuple[int, ...], float]] = []
    visits = 0
    while heap and len(result) < top_k and (max_visits is None or visits < max_visits):
        negative, index = heapq.heappop(heap)
        visits += 1
        if keep is None or keep(index):
            result.append((index, -negative))
        for c in range(len(index)):  # every successor differs from its parent in one component's rank
            if index[c] + 1 < len(components[c]):
                nxt = index[:c] + (index[c] + 1,) + index[c + 1 :]
                if nxt not in seen:
                    seen.add(nxt)
                    heapq.heappush(heap, (-score(nxt), nxt))
    return result


def product_sample(components: Sequence[Sequence[Choice]], index: Sequence[int]) -> dict[str, Any]:
    """The NNI sample of one product (one option index per component)."""
    sample: dict[str, Any] = {}
    for c, i in enumerate(index):
        sample.update(components[c][i][1])
    return sample


def top_k_architectures(
    shapes: Sequence[CellShape],
    alphas: Mapping[str, torch.Tensor],
    top_k: int,
    choices: Mapping[str, Sequence[Any]] | None = None,
) -> list[tuple[dict[str, Any], float]]:
    """The ``top_k`` most probable distinct architectures with their log-probabilities, best first.

    ``choices`` gives the candidate values of the choices outside the cells (label → values, in α's order).
    Fewer come back only when the space holds fewer architectures than ``top_k``.
    """
    top_k = check_top_k(top_k)
    components = architecture_components(shapes, alphas, top_k, choices)
    return [(product_sample(components, index), score) for index, score in best_products(components, top_k)]


def architecture_log_prob(
    shapes: Sequence[CellShape],
    alphas: Mapping[str, torch.Tensor],
    sample: Mapping[str, Any],
    choices: Mapping[str, Sequence[Any]] | None = None,
) -> float:
    """Log-probability of any ``sample`` under α, as :func:`top_k_architectures` scores the ones it enumerates."""
    from ..space.gumbel_cell import edge_index
    from ..space.slot_cell import pair_column, slot_index, valid_pairs

    alphas = {str(label): alpha for label, alpha in alphas.items()}
    total = 0.0
    for label, values in (choices or {}).items():
        total += float(F.log_softmax(alphas[str(label)].detach().float().cpu(), -1)[list(values).index(sample[label])])
    for shape in shapes:
        n_ops = len(shape.op_names)
        alpha = alphas[shape.label].detach().float().cpu()
        for node in range(shape.num_predecessors, shape.num_predecessors + shape.num_nodes):
            picked = {}
            for slot in range(shape.num_inputs):
                pred = int(sample[f'{shape.label}/input_{node}_{slot}'][0])
                op = shape.op_names.index(sample[f'{shape.label}/op_{node}_{slot}'])
                if shape.parameterization == 'slot':
                    mask = valid_pairs(shape.num_nodes, shape.num_inputs, shape.num_predecessors, n_ops)
                    logp = F.log_softmax(alpha.masked_fill(~mask, float('-inf')), -1)
                    total += float(
                        logp[
                            slot_index(node, slot, shape.num_predecessors, shape.num_inputs),
                            pair_column(pred, op, n_ops),
                        ]
                    )
                else:  # a kept edge counts once, however many slots cycle over it (as the enumeration scores it)
                    picked[pred] = op
            for pred, op in picked.items():
                total += float(F.log_softmax(alpha[edge_index(node, pred, shape.num_predecessors)], -1)[op])
    return total


def rank_architectures(
    shapes: Sequence[CellShape],
    alphas: Mapping[str, torch.Tensor],
    top_k: int,
    scorer: Callable[[list[dict[str, Any]]], Sequence[float]] | None = None,
    pool: int = 4,
    choices: Mapping[str, Sequence[Any]] | None = None,
) -> list[tuple[dict[str, Any], float]]:
    """Top-k by α, or, with a ``scorer`` (e.g. the meta performance predictor), the ``top_k`` best by that
    score among the ``pool * top_k`` most probable architectures. Each item: (sample, score), best first."""
    top_k = check_top_k(top_k)
    if scorer is None:
        return top_k_architectures(shapes, alphas, top_k, choices)
    candidates = [sample for sample, _ in top_k_architectures(shapes, alphas, top_k * max(pool, 1), choices)]
    scores = [float(s) for s in scorer(candidates)]
    order = sorted(range(len(candidates)), key=lambda i: (-scores[i], i))
    return [(candidates[i], scores[i]) for i in order[:top_k]]
