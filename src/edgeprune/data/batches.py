"""``BatchLoader``: the training/evaluation input pipeline, in-process and deterministic.

Why not ``torch.utils.data.DataLoader``: the whole split is a uint8 tensor in memory, so a batch is one
``index_select`` plus a few vectorised tensor ops (well over 500 augmented CIFAR batches of 128 per
second on 2 cores). Worker processes would only add start-up time, memory copies and
non-determinism.

Determinism: the shuffle order of epoch ``e`` is drawn from a generator seeded by ``(seed, e)`` and
the augmentation of batch ``k`` from one seeded by ``(seed, e, k)``. Iterating an epoch twice
therefore yields identical batches, a run resumed at epoch ``e`` sees exactly the data the original
run saw, and batch ``k`` does not depend on whether batches ``0..k-1`` were consumed. The epoch does
*not* advance by itself: call :meth:`BatchLoader.set_epoch` at the start of every epoch (as with
``DistributedSampler``), otherwise every epoch repeats epoch 0.

Augmentation (``augment=True``) is the standard CIFAR recipe: zero-pad by 4 pixels, take a random
``H x W`` crop, flip horizontally with probability 0.5. It runs on uint8 before normalisation, so
padded pixels are 0 (black) before ``(x/255 - mean)/std``, exactly like torchvision's
``RandomCrop(padding=4)`` applied to the PIL image followed by ``Normalize``.

A data set with a ``crop`` (loaded with ``?size=N``, images stored larger) gets ImageNet's transforms
instead: training takes a random-resized crop (area 8-100 % of the stored image, aspect ratio 3/4-4/3,
torchvision's ``RandomResizedCrop``; the stored image is the centre square of the original) resampled
bilinearly to ``crop`` x ``crop`` by one batched ``grid_sample``, flipped with probability 0.5;
evaluation (``augment=False``) takes the centre ``crop`` square, which for images stored at 256 is
"resize 256, centre crop 224" exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from edgeprune.data.dataset import ImageDataset, centre_square
from edgeprune.errors import ConfigError

PAD = 4
_SHUFFLE, _AUGMENT = 0, 1
#: torchvision's RandomResizedCrop defaults: area fraction and aspect-ratio range, and tries per image.
RRC_SCALE, RRC_RATIO, RRC_TRIES = (0.08, 1.0), (3 / 4, 4 / 3), 10


def _derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from small integers (SeedSequence hashes them)."""
    state = np.random.SeedSequence([p % 2**64 for p in parts]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def _per_channel(values: Sequence[float], channels: int, what: str) -> list[float]:
    vals = [float(v) for v in values]
    if len(vals) == 1:
        vals = vals * channels
    if len(vals) != channels:
        raise ConfigError(f"{what} has {len(vals)} values but the images have {channels} channel(s).")
    return vals


class BatchLoader:
    """Yields ``(x, y)``: ``x`` float32 ``(B, C, H, W)`` normalised, ``y`` int64 ``(B,)``."""

    def __init__(
        self,
        ds: ImageDataset,
        batch_size: int,
        *,
        shuffle: bool,
        augment: bool,
        mean: Sequence[float],
        std: Sequence[float],
        seed: int = 0,
        drop_last: bool = False,
        channels_last: bool = False,
    ) -> None:
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}.")
        _, h, w, c = ds.images.shape
        self.crop = ds.crop
        if self.crop is not None:  # the model sees crop x crop; the stored images are larger
            h = w = self.crop
        mean_c = _per_channel(mean, c, "mean")
        std_c = _per_channel(std, c, "std")
        if any(not s > 0 for s in std_c):
            raise ConfigError(f"std must be positive in every channel, got {tuple(std_c)}.")
        self.ds = ds
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.augment = augment
        self.seed = int(seed)
        self.drop_last = drop_last
        self.channels_last = channels_last
        self.epoch = 0
        images = ds.images if ds.images.flags.writeable else ds.images.copy()
        self._images = torch.from_numpy(np.ascontiguousarray(images))  # (N, H, W, C) uint8, shared
        self._labels = torch.from_numpy(np.ascontiguousarray(ds.labels, dtype=np.int64))
        # (x/255 - mean)/std == x * scale - shift, applied as one flat per-element vector because a
        # broadcast over a tiny innermost channel dimension is several times slower on CPU.
        scale = torch.tensor([1.0 / (255.0 * s) for s in std_c], dtype=torch.float32)
        shift = torch.tensor([m / s for m, s in zip(mean_c, std_c, strict=True)], dtype=torch.float32)
        if channels_last:  # normalised in (H, W, C) memory order
            self._scale, self._shift = scale.repeat(h * w), shift.repeat(h * w)
        else:  # normalised in (C, H, W) memory order
            self._scale, self._shift = scale.repeat_interleave(h * w), shift.repeat_interleave(h * w)
        self._rows = torch.arange(h)
        self._cols = torch.arange(w)
        self._cols_flipped = torch.arange(w - 1, -1, -1)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffle order and augmentation the next iteration produces."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.ds)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.ds)
        gen = torch.Generator()
        order = None
        if self.shuffle:
            gen.manual_seed(_derive_seed(self.seed, self.epoch, _SHUFFLE))
            order = torch.randperm(n, generator=gen)
        for k in range(len(self)):
            start = k * self.batch_size
            stop = min(start + self.batch_size, n)
            if order is None:
                x = self._images[start:stop]
                y = self._labels[start:stop].clone()  # never hand out a view of the data set
            else:
                idx = order[start:stop]
                x = self._images.index_select(0, idx)
                y = self._labels.index_select(0, idx)
            if self.crop is not None:
                if self.augment:
                    gen.manual_seed(_derive_seed(self.seed, self.epoch, _AUGMENT, k))
                    yield self._normalise(self._random_resized_crop(x, gen)), y
                else:
                    yield self._normalise(centre_square(x, self.crop)), y
                continue
            if self.augment:
                gen.manual_seed(_derive_seed(self.seed, self.epoch, _AUGMENT, k))
                x = self._crop_flip(x, gen)
            yield self._normalise(x), y

    def _crop_flip(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Pad-4 random crop + random horizontal flip of a uint8 (B, H, W, C) batch, fully vectorised."""
        b, h, w, c = x.shape
        hp, wp = h + 2 * PAD, w + 2 * PAD
        offsets = torch.randint(0, 2 * PAD + 1, (2, b), generator=gen)
        flip = torch.rand(b, generator=gen) < 0.5
        padded = x.new_zeros((b, hp, wp, c))
        padded[:, PAD : PAD + h, PAD : PAD + w] = x
        # Rows: one index_select of whole padded rows; columns (crop offset and flip at once): a gather.
        rows = (torch.arange(b)[:, None] * hp + offsets[0][:, None] + self._rows).reshape(-1)
        picked = padded.view(b * hp, wp, c).index_select(0, rows).view(b, h, wp, c)
        cols = torch.where(flip[:, None], self._cols_flipped, self._cols) + offsets[1][:, None]
        return torch.gather(picked, 2, cols[:, None, :, None].expand(b, h, w, c))

    def _random_resized_crop(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """RandomResizedCrop + flip of a uint8 (B, H, W, C) batch; float (B, crop, crop, C) in 0..255 back."""
        b, h, w, c = x.shape
        area = h * w * (RRC_SCALE[0] + (RRC_SCALE[1] - RRC_SCALE[0]) * torch.rand(b, RRC_TRIES, generator=gen))
        log_lo, log_hi = math.log(RRC_RATIO[0]), math.log(RRC_RATIO[1])
        ratio = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(b, RRC_TRIES, generator=gen))
        bw, bh = (area * ratio).sqrt(), (area / ratio).sqrt()
        fits = (bw <= w) & (bh <= h)
        first = fits.int().argmax(1)  # the first try that fits, as torchvision takes it
        pick = torch.arange(b)
        bw = torch.where(fits.any(1), bw[pick, first], torch.full((b,), float(min(h, w))))
        bh = torch.where(fits.any(1), bh[pick, first], torch.full((b,), float(min(h, w))))
        left = (w - bw) * torch.rand(b, generator=gen)
        top = (h - bh) * torch.rand(b, generator=gen)
        flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
        # Output pixel grid in [-1, 1] -> the box in the input's [-1, 1] (align_corners=False convention).
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0] = bw / w * flip
        theta[:, 0, 2] = (2 * left + bw) / w - 1
        theta[:, 1, 1] = bh / h
        theta[:, 1, 2] = (2 * top + bh) / h - 1
        grid = F.affine_grid(theta, [b, c, self.crop, self.crop], align_corners=False)
        src = x.permute(0, 3, 1, 2).float()
        out = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return out.permute(0, 2, 3, 1)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        if self.channels_last:
            out = x.float().contiguous()  # (B, H, W, C) contiguous == (B, C, H, W) in channels_last memory format
            out.view(b, -1).mul_(self._scale).sub_(self._shift)
            return out.permute(0, 3, 1, 2)
        out = x.permute(0, 3, 1, 2).float().contiguous()
        out.view(b, -1).mul_(self._scale).sub_(self._shift)
        return out
