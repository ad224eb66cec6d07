"""A task family of real photographs: crops of the two colour photos scikit-learn ships, one class per region.

``sklearn.datasets.load_sample_images`` holds two 427x640 photographs (a temple, a flower) inside the installed
package, so this family needs no download. Each photo is shrunk by :data:`SHRINK` and cut into a 2 x 4 grid of
regions; a class is one region (16 in all), an image is a random ``image_size`` crop inside it, flipped left-right
at random. What tells classes apart is real colour and real texture (roof tiles, foliage, sky, petals) — the one
family whose three channels differ.

Classes are split as the procedural families' are (every third class held out, from the second), so the held-out
split has regions of both photos. Images are standardised per channel over the family.

>>> splits = scenes_splits(image_size=16, images_per_class=8)
>>> splits['train'][0][0].shape, splits['train'].num_classes, splits['test'].num_classes
(torch.Size([3, 16, 16]), 11, 5)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .datasets import LabeledTensorDataset

__all__ = ['SCENE_GRID', 'SHRINK', 'scenes_splits']

#: Regions per photo (rows, columns): 2 photos x 8 regions = 16 classes.
SCENE_GRID = (2, 4)
#: Each photo's side is divided by this before cropping, so a 16 px crop covers about a sixth of a region's width.
SHRINK = 4
_HELDOUT_EVERY = 3


def _photos() -> list[torch.Tensor]:
    from sklearn.datasets import load_sample_images  # sklearn is slow to import and needed only here

    photos = []
    for image in load_sample_images().images:
        x = torch.as_tensor(np.array(image), dtype=torch.float32).permute(2, 0, 1).unsqueeze(0) / 255.0
        size = (x.shape[-2] // SHRINK, x.shape[-1] // SHRINK)
        photos.append(F.interpolate(x, size=size, mode='bilinear', antialias=True, align_corners=False)[0])
    return photos


def _regions(photo: torch.Tensor) -> list[torch.Tensor]:
    rows, cols = SCENE_GRID
    h, w = photo.shape[-2] // rows, photo.shape[-1] // cols
    return [photo[:, r * h : (r + 1) * h, c * w : (c + 1) * w] for r in range(rows) for c in range(cols)]


def scenes_splits(image_size: int = 16, images_per_class: int = 100, seed: int = 0) -> dict[str, LabeledTensorDataset]:
    """The meta-train (11 regions) and held-out (5 regions) splits of the photo family.

    ``image_size``: crop side, 8 to 24 (a region is 53 x 40 pixels after shrinking); ``images_per_class``: crops
    per region; ``seed``: the crop positions and flips (same seed, same images).
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or not 8 <= image_size <= 24:
        raise ValueError(f'image_size must be an int in 8..24 for the scenes family, got {image_size!r}.')
    if isinstance(images_per_class, bool) or not isinstance(images_per_class, int) or images_per_class < 2:
        raise ValueError(f'images_per_class must be an int >= 2, got {images_per_class!r}.')
    rng = np.random.default_rng([seed, 7919])
    regions = [region for photo in _photos() for region in _regions(photo)]
    crops = []
    for region in regions:
        h, w = region.shape[-2:]
        ys = rng.integers(0, h - image_size + 1, images_per_class)
        xs = rng.integers(0, w - image_size + 1, images_per_class)
        flips = rng.random(images_per_class) < 0.5
        crop = [region[:, y : y + image_size, x : x + image_size] for y, x in zip(ys, xs)]
        crops.append(torch.stack([c.flip(-1) if f else c for c, f in zip(crop, flips)]))
    data = torch.stack(crops)  # (classes, n, 3, S, S)
    mean = data.mean(dim=(0, 1, 3, 4), keepdim=True)
    std = data.std(dim=(0, 1, 3, 4), keepdim=True)
    data = (data - mean) / std
    splits = {}
    for split, keep in (('train', lambda c: c % _HELDOUT_EVERY != 1), ('test', lambda c: c % _HELDOUT_EVERY == 1)):
        chosen = [c for c in range(len(regions)) if keep(c)]
        x = data[chosen].flatten(0, 1)
        y = torch.arange(len(chosen)).repeat_interleave(images_per_class)
        splits[split] = LabeledTensorDataset(x.contiguous(), y, [f'scenes/{c}' for c in chosen])
    return splits
