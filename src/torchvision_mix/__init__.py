"""torchvision_mix: exact, fast batch-mixing augmentations for ``torchvision.transforms.v2``.

Public names: :class:`CutMix`, :class:`AttentiveCutMix`, the mask core in :mod:`torchvision_mix.masks`
and the feature extractors in :mod:`torchvision_mix.attention`.
"""

from . import attention, masks
from ._transforms import AttentiveCutMix, CutMix
from .collate import MixCollate

__version__ = "0.1.0"

__all__ = ["AttentiveCutMix", "CutMix", "MixCollate", "__version__", "attention", "masks"]
