"""Procedural task families whose best operation differs, for checking that BASE's α learns.

Each family is a labelled dataset of generated images whose classes are defined by one kind of
structure, chosen so that a different DARTS operation should serve it best:

* ``'peaks'``   — a class is the height of one bright pixel in bright clutter whose level varies per
  image: the class is in the image's *maximum*, which repeated max-pooling spreads and averaging
  washes out.
* ``'texture'`` — a class is the orientation and period (3–4 px) of a faint grating with random
  phase under strong pixel noise: orientation evidence must be pooled over a patch.
* ``'pairs'``   — a class is the direction of the 7 px offset between the two dots of each of four
  dot pairs: the two dots must meet in one receptive field.
* ``'stripes'`` — a class is the orientation and period (2–2.6 px) of a fine, clean grating: a 3x3 pooling
  window averages or rectifies a period this short away, a filter keeps it.
* ``'shapes'``  — a class is the kind (ring, square, plus, cross) and size of one outlined shape at a random
  place among clutter dots: a shape needs filters that see its outline.
* ``'layout'``  — a class is which of the four quadrants are brighter, under strong pixel noise: coarse,
  position-bound evidence, which a shallow cell carries as well as a deep one.

Which operation *actually* wins is not assumed here: ``benchmarks/known_answer.py`` trains every
single-operation cell on held-out tasks of each family and ranks the operations with confidence
intervals; that ranking is the family's known answer.

Classes of a family are split into meta-train and held-out classes by interleaving, so both splits
cover the family's whole parameter range. Images are ``(3, S, S)`` (one channel repeated for the
RGB DARTS stem), standardised per family.

Examples
--------
>>> splits = family_splits('texture', image_size=16, images_per_class=8)
>>> splits['train'][0][0].shape, splits['train'].num_classes, splits['test'].num_classes
(torch.Size([3, 16, 16]), 11, 5)
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .datasets import LabeledTensorDataset

__all__ = ['FAMILIES', 'family_splits', 'family_classes', 'novel_classes']

FAMILIES = ('peaks', 'texture', 'pairs', 'stripes', 'shapes', 'layout', 'lines', 'motifs')
# Every third class (from the second) is held out: 16 classes -> 11 meta-train, 5 held-out.
_HELDOUT_EVERY = 3


def family_classes(family: str, shift: float = 0.0) -> list[tuple[float, ...]]:
    """The class parameters of ``family``: peak height; (angle, period); (dy, dx) offset; (angle, period);
    (shape, radius); (quadrant bits, contrast).

    ``shift`` (in grid steps, 0..1) moves every class between the standard ones: ``shift=0.5`` gives 16 classes
    no split of :func:`family_splits` contains (see :func:`novel_classes`).
    """
    if family == 'peaks':
        step = 3.0 / 15
        return [(round(h + shift * step, 3),) for h in np.linspace(1.6, 4.6, 16).tolist()]
    if family == 'texture':
        return [(math.pi * (a + shift) / 8, p) for p in (3.0, 4.0) for a in range(8)]
    if family == 'pairs':
        # One length, 16 directions: the class is the direction alone (a length cue would let blurring tell
        # classes apart without ever seeing both dots of a pair).
        return [
            (round(7 * math.sin(math.pi * (a + shift) / 16)), round(7 * math.cos(math.pi * (a + shift) / 16)))
            for a in range(16)
        ]
    if family == 'stripes':
        return [(math.pi * (a + shift) / 8, p) for p in (2.0, 2.4) for a in range(8)]
    if family == 'shapes':
        return [(float(k), 2.0 + r + shift) for k in range(len(_SHAPES)) for r in range(4)]
    if family == 'layout':
        # the 16 on/off patterns of the four quadrants; shift changes the contrast, not the pattern
        return [(float(bits), round(0.6 + 0.3 * shift, 3)) for bits in range(16)]
    if family == 'motifs':
        # 16 fixed random 5x5 binary patterns; shift flips one more pixel of each (a near but new pattern)
        return [(float(m), float(shift > 0)) for m in range(16)]
    if family == 'lines':
        return [(math.pi * (a + shift) / 8, length) for length in (7.0, 11.0) for a in range(8)]
    raise ValueError(f'Unknown task family {family!r}; choose one of {", ".join(FAMILIES)}.')


def _peaks(params: tuple[float, ...], n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    level = rng.uniform(0.3, 1.0, size=(n, 1, 1))  # clutter level per image: the mean carries no class
    images = rng.uniform(0.0, 1.0, size=(n, size, size)) * level
    ys, xs = rng.integers(1, size - 1, n), rng.integers(1, size - 1, n)
    images[np.arange(n), ys, xs] = params[0]
    return images


def _texture(params: tuple[float, ...], n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    # A faint fine grating under strong pixel noise: one 3x3 filter is too noisy to read its orientation,
    # filters that integrate oriented evidence over a larger patch are not; isotropic pooling loses it.
    angle, period = params
    angle = angle + rng.normal(0.0, 0.05, size=(n, 1, 1))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    phase = rng.uniform(0, 2 * math.pi, size=(n, 1, 1))
    amp = rng.uniform(0.8, 1.2, size=(n, 1, 1))
    wave = amp * np.cos(2 * math.pi / period * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
    return wave + rng.normal(0.0, 1.5, size=(n, size, size))


def _pairs(params: tuple[float, ...], n: int, size: int, rng: np.random.Generator, num_pairs: int = 4) -> np.ndarray:
    dy, dx = int(params[0]), int(params[1])
    images = rng.normal(0.0, 0.1, size=(n, size, size))
    for i in range(n):
        for _ in range(num_pairs):
            y = rng.integers(max(0, -dy), size - max(0, dy))
            x = rng.integers(max(0, -dx), size - max(0, dx))
            images[i, y, x] += 1.5
            images[i, y + dy, x + dx] += 1.5
    return images


def _stripes(params: tuple[float, ...], n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    angle, period = params
    angle = angle + rng.normal(0.0, 0.05, size=(n, 1, 1))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    phase = rng.uniform(0, 2 * math.pi, size=(n, 1, 1))
    wave = np.cos(2 * math.pi / period * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
    return wave + rng.normal(0.0, 1.2, size=(n, size, size))


_SHAPES = ('ring', 'square', 'plus', 'cross')


def _shape_mask(kind: str, dy: np.ndarray, dx: np.ndarray, radius: float) -> np.ndarray:
    if kind == 'ring':
        return np.abs(np.hypot(dy, dx) - radius) < 0.7
    if kind == 'square':
        return np.abs(np.maximum(np.abs(dy), np.abs(dx)) - radius) < 0.7
    if kind == 'cross':  # the plus turned by 45 degrees
        dy, dx, radius = (dy + dx) / math.sqrt(2), (dy - dx) / math.sqrt(2), radius * 1.1
    return ((np.abs(dy) < 0.7) & (np.abs(dx) <= radius)) | ((np.abs(dx) < 0.7) & (np.abs(dy) <= radius))


def _shapes(params: tuple[float, ...], n: int, size: int, rng: np.random.Generator, clutter: int = 6) -> np.ndarray:
    kind, radius = _SHAPES[int(params[0])], params[1]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    images = rng.normal(0.0, 0.3, size=(n, size, size))
    margin = int(math.ceil(radius * 1.1)) + 1
    for i in range(n):
        cy, cx = rng.uniform(margin, size - 1 - margin, 2)
        images[i] += 1.5 * _shape_mask(kind, yy - cy, xx - cx, radius)
        images[i, rng.integers(0, size, clutter), rng.integers(0, size, clutter)] += 1.5
    return images


def _layout(params: tuple[float, ...], n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    bits, contrast = int(params[0]), params[1]
    half = size // 2
    pattern = np.zeros((size, size))
    for q, (y, x) in enumerate(((0, 0), (0, half), (half, 0), (half, half))):
        pattern[y : y + half, x : x + half] = contrast * ((bits >> q) & 1)
    return pattern + rng.normal(0.0, 1.5, size=(n, size, size))


def _draw_segment(image: np.ndarray, cy: float, cx: float, angle: float, length: float, value: float) -> None:
    for t in np.linspace(-length / 2, length / 2, int(2 * length) + 1):
        y, x = int(round(cy + t * math.sin(angle))), int(round(cx + t * math.cos(angle)))
        if 0 <= y < image.shape[0] and 0 <= x < image.shape[1]:
            image[y, x] = value


def _lines(params: tuple[float, ...], n: int, size: int, rng: np.random.Generator, distractors: int = 6) -> np.ndarray:
    # One long thin line among short ones of random orientation: only a filter elongated along the line tells its
    # orientation and length from the clutter; an isotropic 3x3 pool merges line and distractors.
    angle, length = params
    images = rng.normal(0.0, 0.3, size=(n, size, size))
    for i in range(n):
        for _ in range(distractors):
            _draw_segment(images[i], *rng.uniform(0, size, 2), rng.uniform(0, math.pi), 3.0, 1.0)
        centre = rng.uniform(size / 2 - 2, size / 2 + 2, 2)
        _draw_segment(images[i], *centre, angle + rng.normal(0.0, 0.04), length, 1.0)
    return images


_MOTIFS = np.random.default_rng(20261207).random((16, 5, 5)) < 0.5


def _motifs(params: tuple[float, ...], n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    # A 5x5 binary pattern at a random place in noise: the classes share their 3x3 statistics and differ in the
    # arrangement, which a 3x3 pool of the stem's 3x3 features scrambles and a second filter layer reads.
    motif = _MOTIFS[int(params[0])].astype(np.float64)
    if params[1]:
        motif = motif.copy()
        motif[2, 2] = 1.0 - motif[2, 2]
    images = rng.normal(0.0, 0.6, size=(n, size, size))
    for i in range(n):
        y, x = rng.integers(0, size - 4, 2)
        images[i, y : y + 5, x : x + 5] += 2.0 * motif - 1.0
    return images


_GENERATORS = {
    'peaks': _peaks,
    'texture': _texture,
    'pairs': _pairs,
    'stripes': _stripes,
    'shapes': _shapes,
    'layout': _layout,
    'lines': _lines,
    'motifs': _motifs,
}


def family_splits(
    family: str, image_size: int = 16, images_per_class: int = 60, seed: int = 0
) -> dict[str, LabeledTensorDataset]:
    """Generate the meta-train and held-out splits of a task family.

    Parameters
    ----------
    family
        One of :data:`FAMILIES`.
    image_size
        Side length, 16 to 32.
    images_per_class
        Images per class; a task draws ``shots + queries`` of them per class.
    seed
        Seed of the generator: same seed, same images.

    Returns
    -------
    dict
        ``{'train': ..., 'test': ...}``, disjoint classes; ``class_names`` like ``'texture/3'``.
    """
    if family not in _GENERATORS:
        raise ValueError(f'Unknown task family {family!r}; choose one of {", ".join(FAMILIES)}.')
    if isinstance(image_size, bool) or not isinstance(image_size, int) or not 16 <= image_size <= 32:
        raise ValueError(f'image_size must be an int in 16..32, got {image_size!r}.')
    if isinstance(images_per_class, bool) or not isinstance(images_per_class, int) or images_per_class < 2:
        raise ValueError(f'images_per_class must be an int >= 2, got {images_per_class!r}.')
    # One stream per (family, seed), so adding a family never changes another family's images.
    rng = np.random.default_rng([seed, FAMILIES.index(family)])
    classes = family_classes(family)
    images = np.stack([_GENERATORS[family](params, images_per_class, image_size, rng) for params in classes])
    images = (images - images.mean()) / images.std()
    data = torch.as_tensor(images, dtype=torch.float32).unsqueeze(2).repeat(1, 1, 3, 1, 1)
    splits = {}
    for split, keep in (('train', lambda c: c % _HELDOUT_EVERY != 1), ('test', lambda c: c % _HELDOUT_EVERY == 1)):
        chosen = [c for c in range(len(classes)) if keep(c)]
        x = data[chosen].flatten(0, 1)
        y = torch.arange(len(chosen)).repeat_interleave(images_per_class)
        splits[split] = LabeledTensorDataset(x.contiguous(), y, [f'{family}/{c}' for c in chosen])
    return splits


def novel_classes(
    family: str, num_classes: int, image_size: int = 16, images_per_class: int = 60, seed: int = 0
) -> LabeledTensorDataset:
    """``num_classes`` (2..16; 2..8 for pairs) classes of ``family`` that no split of :func:`family_splits` has.

    The classes lie halfway between the standard ones (peak heights, grating orientations, pair directions;
    ``family_classes(family, shift=0.5)``), spread over the family's range; images are standardised as the
    family's are. For datasets with another class count than meta-training, on classes never trained on.
    """
    if family not in _GENERATORS:
        raise ValueError(f'Unknown task family {family!r}; choose one of {", ".join(FAMILIES)}.')
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f'num_classes must be an int >= 2, got {num_classes!r}.')
    standard = set(family_classes(family))
    shifted = [c for c in family_classes(family, shift=0.5) if c not in standard]  # pairs: integer offsets collide
    if num_classes > len(shifted):
        raise ValueError(f'{family} has {len(shifted)} novel classes, got num_classes={num_classes}: ask for fewer.')
    rng = np.random.default_rng([seed, FAMILIES.index(family), 1])
    chosen = np.linspace(0, len(shifted) - 1, num_classes).round().astype(int).tolist()
    images = np.stack([_GENERATORS[family](shifted[c], images_per_class, image_size, rng) for c in chosen])
    images = (images - images.mean()) / images.std()
    x = torch.as_tensor(images, dtype=torch.float32).unsqueeze(2).repeat(1, 1, 3, 1, 1).flatten(0, 1)
    y = torch.arange(num_classes).repeat_interleave(images_per_class)
    return LabeledTensorDataset(x.contiguous(), y, [f'{family}/novel{c}' for c in chosen])
