"""The one retraining recipe of the demo and the search → retrain benchmark, for datasets held in memory.

Where it sits: after export, as :func:`~nni_base.cli.retrain.retrain` does at paper scale. Every exported cell
— BASE's, NNI's strategies', random ones — is built fresh from the space (``space.freeze(sample)``: new
weights, nothing kept from any supernet), trained with the same recipe and seed, and scored on test images
that no search saw, in eval mode, as a user runs it.

Example
-------
>>> acc = retrain_and_test(space.freeze(sample), train_set, test_set, epochs=15, seed=0)   # doctest: +SKIP
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from ...tasks.metrics import accuracy as accuracy_of

__all__ = ['retrain_and_test']


def retrain_and_test(
    net: nn.Module,
    train_set: Dataset,
    test_set: Dataset,
    *,
    epochs: int = 15,
    batch_size: int = 32,
    lr: float = 3e-3,
    weight_decay: float = 3e-4,
    seed: int = 0,
    device: str | torch.device = 'cpu',
    precision: str = '32-true',
    num_workers: int = 0,
) -> float:
    """Train ``net`` from its current (fresh) weights on ``train_set``; return its accuracy on ``test_set``.

    Adam at ``lr`` with cosine decay over ``epochs``, shuffled mini-batches drawn by a generator seeded with
    ``seed``; the test set is scored in eval mode (running BatchNorm statistics). ``device``: where to train;
    ``precision``: ``'32-true'`` or ``'bf16-mixed'`` (autocast to bfloat16, weights kept in float32, as Lightning's
    option of that name); ``num_workers``: DataLoader processes (with a GPU the batches are pinned).
    """
    if precision not in ('32-true', 'bf16-mixed'):
        raise ValueError(f"precision must be '32-true' or 'bf16-mixed', got {precision!r}.")
    device = torch.device(device)
    pin = device.type == 'cuda'
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        train_set, batch_size=batch_size, shuffle=True, generator=generator, num_workers=num_workers, pin_memory=pin
    )
    net = net.to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(epochs * len(loader), 1))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == 'bf16-mixed')
    net.train()
    for _ in range(epochs):
        for x, y in loader:
            x, y = x.to(device, non_blocking=pin), y.to(device, non_blocking=pin)
            optimizer.zero_grad()
            with autocast:
                logits = net(x)
                logits = logits[0] if isinstance(logits, tuple) else logits
                loss = nn.functional.cross_entropy(logits.float(), y)
            loss.backward()
            optimizer.step()
            schedule.step()
    net.eval()
    correct = total = 0
    with torch.no_grad(), autocast:
        for x, y in DataLoader(test_set, batch_size=256, num_workers=num_workers, pin_memory=pin):
            x, y = x.to(device, non_blocking=pin), y.to(device, non_blocking=pin)
            logits = net(x)
            logits = logits[0] if isinstance(logits, tuple) else logits
            correct += float(accuracy_of(logits, y)) * len(y)
            total += len(y)
    return correct / total
