"""torchvision_mix: exact, fast batch-mixing augmentations for ``torchvision.transforms.v2``.

Public names: :class:`CutMix`, and the mask core in :mod:`torchvision_mix.masks`.
"""

from . import masks
from ._transforms import CutMix

__version__ = "0.1.0"

__all__ = ["CutMix", "__version__", "masks"]
