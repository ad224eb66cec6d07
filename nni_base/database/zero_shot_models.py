"""Zero-shot NAS learnt from a ground-truth database: a per-edge generator and a ranking predictor (MetaD2A's
dataset → architecture step, fitted to :class:`~nni_base.database.ground_truth.ArchitectureDatabase` accuracies).

Where it sits
    After a database is built (:mod:`nni_base.database.ground_truth`), instead of meta-training: for a new dataset,
    :meth:`DatabaseZeroShot.top_k` encodes its support set, generates candidates from per-edge operation
    distributions and ranks them with the predictor — no search, no training.

Why this shape (a small database)
    MetaD2A learns a set transformer, a graph decoder and a predictor from thousands of dataset–architecture
    pairs. A CPU-scale database has tens of tasks: too few to learn an encoder. So the dataset encoding is fixed
    (the mean and spread of the same per-image statistics :func:`~.encoder.image_features` the learnt encoder
    reads, standardised over the database's tasks), and what is learnt is per task and pooled by similarity:
    a task kernel ``κ(new, j) ∝ exp(-‖e_new − e_j‖² / τ)`` over the database's tasks (τ: the median squared
    distance from a task to its nearest other one) weighs

    * the **generator**: task ``j``'s per-edge operation frequencies over its architectures, each weighted by
      ``exp(accuracy / (temperature · spread))`` (seed-averaged accuracy; the best count most, as in
      reward-weighted regression), smoothed, as the probabilities of a DARTS α — one row per edge, the ``none``
      column the edge's absence — so it says, edge by edge, what BASE's adapted α says;
    * the **predictor**: task ``j``'s ridge regression from an architecture's operation counts per cell type
      (strongly weighted: few numbers, well estimated) and its per-edge operations (weakly weighted: many numbers)
      to its accuracy relative to the task's mean.

    >>> model = DatabaseZeroShot.fit(load_database(), db.task_indices(split='train'))
    >>> picks = model.top_k(task.support_x, task.support_y, k=5)           # [(sample, predicted gain), ...]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..search.top_k import CellShape, darts_cell_shapes, top_k_architectures
from .encoder import check_support, image_features
from .ground_truth import ArchitectureDatabase

__all__ = ['task_encoding', 'edge_features', 'DatabaseZeroShot', 'leave_one_family_out']


def task_encoding(support_x: torch.Tensor, support_y: torch.Tensor) -> np.ndarray:
    """A support set → fixed statistics: the mean and the spread over its images of :func:`image_features`."""
    check_support(support_x, support_y)
    f = image_features(support_x).double()
    return torch.cat([f.mean(0), f.std(0, unbiased=False)]).numpy()


def edge_features(sample: dict[str, Any], shapes: Sequence[CellShape]) -> tuple[np.ndarray, np.ndarray]:
    """An NNI sample → (operation counts per cell type, one-hot of (edge, operation) per cell type)."""
    counts, edges = [], []
    for s in shapes:
        n_ops, rows = len(s.op_names), sum(range(s.num_predecessors, s.num_predecessors + s.num_nodes))
        c, e = np.zeros(n_ops), np.zeros((rows, n_ops))
        for node in range(s.num_predecessors, s.num_predecessors + s.num_nodes):
            for k in range(s.num_inputs):
                pred = int(sample[f'{s.label}/input_{node}_{k}'][0])
                op = s.op_names.index(sample[f'{s.label}/op_{node}_{k}'])
                c[op] += 1
                e[sum(range(s.num_predecessors, node)) + pred, op] = 1
        counts.append(c)
        edges.append(e.ravel())
    return np.concatenate(counts), np.concatenate(edges)


def leave_one_family_out(db: ArchitectureDatabase, family: str) -> tuple[list[int], list[int]]:
    """(fit tasks, evaluation tasks): every task of the other families, and every task of ``family``."""
    if family not in db.spec.families:
        raise ValueError(f'{family!r} is not a family of this database ({", ".join(db.spec.families)}).')
    return [t for t, e in enumerate(db.tasks) if e.family != family], db.task_indices(family)


@dataclass
class DatabaseZeroShot:
    """The fitted generator and predictor (see the module docstring); build with :meth:`fit`."""

    shapes: list[CellShape]
    encodings: np.ndarray  # (fit tasks, E), standardised
    encoding_mean: np.ndarray
    encoding_scale: np.ndarray
    bandwidth: float
    edge_probs: dict[str, np.ndarray]  # label -> (fit tasks, edges, ops + 1): per-edge op frequencies, last: absent
    weights: np.ndarray  # (fit tasks, features + 1): ridge weights, last: intercept
    count_weight: float
    fit_tasks: list[int]
    gain_scale: float  # the regression generator's temperature: the spread of the fit tasks' accuracies

    @classmethod
    def fit(
        cls,
        db: ArchitectureDatabase,
        tasks: Sequence[int],
        *,
        architectures: Sequence[int] | None = None,
        temperature: float = 0.5,
        smoothing: float = 0.5,
        ridge: float = 1.0,
        count_weight: float = 3.0,
    ) -> DatabaseZeroShot:
        """Fit on the database's ``tasks`` and ``architectures`` (indices; default all), from their seed-averaged
        accuracies."""
        tasks = list(tasks)
        if len(tasks) < 2:
            raise ValueError(f'Fitting needs at least two database tasks (one kernel bandwidth), got {len(tasks)}.')
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0 (in units of a task's accuracy spread), got {temperature}.")
        shapes = darts_cell_shapes(db.spec.num_nodes, db.spec.ops)
        mean = db.mean_accuracy()
        pool = range(len(db.architectures)) if architectures is None else architectures
        measured = [a for a in pool if np.isfinite(mean[tasks, a]).all()]
        if len(measured) < 4:
            raise ValueError('The database has fewer than 4 architectures measured on every fit task: build more.')
        x = np.stack([_design(db.architectures[a], shapes, count_weight) for a in measured])
        raw = np.stack([task_encoding(db.task(t).support_x, db.task(t).support_y) for t in tasks])
        enc_mean, enc_scale = raw.mean(0), raw.std(0) + 1e-8
        encodings = (raw - enc_mean) / enc_scale
        d2 = ((encodings[:, None] - encodings[None]) ** 2).sum(-1)
        np.fill_diagonal(d2, np.inf)
        bandwidth = float(np.median(d2.min(1))) or 1.0  # a local scale: a task's nearest neighbour counts
        probs = {s.label: [] for s in shapes}
        weights = []
        for t in tasks:
            y = mean[t, measured]
            # every architecture weighted by exp(accuracy / (temperature * spread)): the best count most, none is lost
            z = (y - y.max()) / (temperature * (y.std() or 1.0))
            samples = [db.architectures[a] for a in measured]
            for s, p in zip(shapes, _edge_frequencies(samples, np.exp(z), shapes, smoothing)):
                probs[s.label].append(p)
            weights.append(_ridge(x, y - y.mean(), ridge))
        return cls(
            shapes,
            encodings,
            enc_mean,
            enc_scale,
            bandwidth,
            {k: np.stack(v) for k, v in probs.items()},
            np.stack(weights),
            count_weight,
            tasks,
            float(np.nanstd(mean[tasks][:, measured], 1).mean()) or 1.0,
        )

    def kernel(self, support_x: torch.Tensor, support_y: torch.Tensor) -> np.ndarray:
        """The weights of the fit tasks for a new support set (they sum to 1)."""
        e = (task_encoding(support_x, support_y) - self.encoding_mean) / self.encoding_scale
        logits = -((self.encodings - e) ** 2).sum(1) / self.bandwidth
        w = np.exp(logits - logits.max())
        return w / w.sum()

    def alphas(
        self, support_x: torch.Tensor, support_y: torch.Tensor, generator: str = 'frequency'
    ) -> dict[str, torch.Tensor]:
        """The generator's per-edge log-probabilities (DARTS α rows; last column: the edge is absent).

        ``'frequency'`` (default): the fit tasks' accuracy-weighted per-edge frequencies (MetaD2A's way: learnt
        from the tasks' best architectures). It is the default because it holds on the shipped database: its
        top-1 at the 97th-99th percentile of held-out-class tasks of peaks and texture, where the regression
        generator's extrapolation reaches the 87th-91st (``benchmarks.database_zero_shot``).
        ``'regression'``: the predictor's own per-edge gains (its per-edge weight plus
        its count weight of the cell type), as logits against an absent edge's 0 — the architecture they rank
        first is the predictor's best of the whole space.
        """
        w = self.kernel(support_x, support_y)
        if generator == 'frequency':
            return {
                label: torch.from_numpy(np.log(np.tensordot(w, p, 1))).float() for label, p in self.edge_probs.items()
            }
        if generator != 'regression':
            raise ValueError(f"generator must be 'regression' or 'frequency', got {generator!r}.")
        gains = (w @ self.weights)[:-1]
        n_counts = sum(len(s.op_names) for s in self.shapes)
        counts, edges = self.count_weight * gains[:n_counts], gains[n_counts:]
        out, c0, e0 = {}, 0, 0
        for s in self.shapes:
            n_ops, rows = len(s.op_names), sum(range(s.num_predecessors, s.num_predecessors + s.num_nodes))
            per_edge = edges[e0 : e0 + rows * n_ops].reshape(rows, n_ops) + counts[c0 : c0 + n_ops]
            logits = torch.from_numpy(np.concatenate([per_edge, np.zeros((rows, 1))], 1) / self.gain_scale).float()
            out[s.label] = torch.log_softmax(logits, 1)
            c0, e0 = c0 + n_ops, e0 + rows * n_ops
        return out

    def predict(self, support_x: torch.Tensor, support_y: torch.Tensor, samples: Sequence[dict]) -> np.ndarray:
        """The predictor: each sample's accuracy relative to the task's mean architecture."""
        w = self.kernel(support_x, support_y) @ self.weights
        return np.stack([_design(s, self.shapes, self.count_weight) for s in samples]) @ w[:-1] + w[-1]

    def top_k(
        self,
        support_x: torch.Tensor,
        support_y: torch.Tensor,
        k: int = 5,
        candidates: int = 50,
        generator: str = 'frequency',
        budget: Any = None,
    ) -> list[tuple[dict[str, Any], float]]:
        """The ``k`` best of the generator's ``candidates`` most probable architectures, by the predictor (with
        ``budget``, a :class:`~nni_base.hardware.SearchBudget`: the most probable ones under it)."""
        alphas = self.alphas(support_x, support_y, generator)
        ranking = {label: _likelihood_alpha(alpha) for label, alpha in alphas.items()}
        size = max(k, candidates)
        probable = top_k_architectures(self.shapes, ranking, size) if budget is None else budget.ranked(ranking, size)
        pool = [s for s, _ in probable]
        scores = self.predict(support_x, support_y, pool)
        order = np.argsort(-scores, kind='stable')[:k]
        return [(pool[i], float(scores[i])) for i in order]


def _likelihood_alpha(logp: torch.Tensor) -> torch.Tensor:
    """Rows whose log-softmax, on the operation columns, is ``log p(edge, op) - log p(edge absent)`` up to one
    constant shared by all rows: the enumeration then ranks samples by their full likelihood under the
    generator, absent edges included (the plain rows would score only the edges a sample keeps)."""
    scores = logp[:, :-1] - logp[:, -1:]
    shared = float(torch.logsumexp(scores, 1).max()) + 1.0
    rest = torch.log(torch.exp(torch.tensor(shared)) - torch.exp(scores).sum(1, keepdim=True))
    return torch.cat([scores, rest], 1)


def _design(sample: dict[str, Any], shapes: Sequence[CellShape], count_weight: float) -> np.ndarray:
    counts, edges = edge_features(sample, shapes)
    return np.concatenate([count_weight * counts, edges])


def _ridge(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """Ridge weights with an unpenalised intercept (last), solved in the dual: more features than samples."""
    xc = x - x.mean(0)
    alpha = np.linalg.solve(xc @ xc.T + lam * np.eye(len(x)), y - y.mean())
    w = xc.T @ alpha
    return np.append(w, y.mean() - x.mean(0) @ w)


def _edge_frequencies(
    samples: Sequence[dict], weights: np.ndarray, shapes: Sequence[CellShape], smoothing: float
) -> list[np.ndarray]:
    """Per edge: P(absent) and P(op | present) · P(present), each sample counted with its weight; ``smoothing``
    pseudo-counts (in units of the mean weight) per cell."""
    weights = weights / weights.mean()
    out = []
    for s in shapes:
        n_ops, rows = len(s.op_names), sum(range(s.num_predecessors, s.num_predecessors + s.num_nodes))
        counts = np.full((rows, n_ops + 1), smoothing)
        for sample, weight in zip(samples, weights):
            for node in range(s.num_predecessors, s.num_predecessors + s.num_nodes):
                present = {}
                for k in range(s.num_inputs):
                    pred = int(sample[f'{s.label}/input_{node}_{k}'][0])
                    present[pred] = s.op_names.index(sample[f'{s.label}/op_{node}_{k}'])
                for pred in range(node):
                    row = sum(range(s.num_predecessors, node)) + pred
                    counts[row, present.get(pred, n_ops)] += weight
        out.append(counts / counts.sum(1, keepdims=True))
    return out
