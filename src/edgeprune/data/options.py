"""Loading options carried in the data source string: ``PATH?size=224&resize=256&per_class=100``.

Why in the string and not as flags: DATA travels as one string through every command, sweep file,
queued job and checkpoint provenance; options that change what the model sees (its input size) must
travel with it, or a sweep's consumer would evaluate 32-px images on a model fine-tuned at 224.

* ``size``: the side of the square the model sees. Training takes a random-resized crop (scale
  0.08-1, aspect 3/4-4/3) + horizontal flip; evaluation the centre ``size`` square: ImageNet's
  "resize 256, centre crop 224" when ``size`` is 224. Any size works (the model's own input size).
* ``resize``: the side images are stored at (shorter side scaled to it, centre square kept); default
  ``round(size / 0.875)``, ImageNet's ratio (256 for 224). Without ``size``, resizes only.
* ``per_class``: keep only the first N images of each class (in file order) before decoding: a
  class-balanced subset of a large split, e.g. CIFAR-10 resized to 224 on a small machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from urllib.parse import parse_qsl

from edgeprune.errors import DataError, closest

#: ImageNet's evaluation crop: resize to 256, centre-crop 224.
CROP_PCT = 0.875
_KEYS = ("size", "resize", "per_class")


@dataclass(frozen=True)
class DataOptions:
    size: int | None = None
    resize: int | None = None
    per_class: int | None = None

    @property
    def stored_side(self) -> int | None:
        """The side images are stored at after decoding (``None``: as they are)."""
        if self.resize is not None:
            return self.resize
        return round(self.size / CROP_PCT) if self.size is not None else None

    def key(self) -> str:
        """A stable text for cache keys ("" without options, so existing cache entries stay valid)."""
        return "&".join(f"{k}={v}" for k, v in asdict(self).items() if v is not None)


def split_data_spec(source: str) -> tuple[str, DataOptions]:
    """``"PATH?k=v&..."`` -> (``PATH``, options); a string without ``?`` has no options."""
    path, sep, query = source.partition("?")
    if not sep:
        return source, DataOptions()
    values: dict[str, int] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if key not in _KEYS:
            near = closest(key, _KEYS)
            suggestion = f" Did you mean {near[0]!r}?" if near else ""
            raise DataError(f"Data option {key!r} in {source!r} is not known.{suggestion}",
                            hint=f"Options: {', '.join(_KEYS)} (e.g. PATH?size=224&per_class=100).")
        try:
            number = int(value)
        except ValueError:
            number = 0
        if number < 1:
            raise DataError(f"Data option {key}={value!r} in {source!r} must be a positive whole number.")
        values[key] = number
    options = DataOptions(**values)
    stored = options.stored_side
    if options.size is not None and stored is not None and stored < options.size:
        raise DataError(f"Data options in {source!r}: resize={stored} is smaller than size={options.size}; "
                        "the centre crop must fit in the stored image.",
                        hint=f"Use resize >= {options.size}, or leave resize out (default size / {CROP_PCT}).")
    return path, options
