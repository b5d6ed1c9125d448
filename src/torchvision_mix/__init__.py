"""torchvision_mix: exact, fast batch-mixing augmentations for ``torchvision.transforms.v2``.

Public names: the mixes (:class:`CutMix`, :class:`AttentiveCutMix`, :class:`SaliencyMix`,
:class:`FMix`, :class:`GridMix`, :class:`MixUp`), the switch between them (:class:`RandomMix`),
the public bases of mask mixes and blends :class:`MaskMix` and :class:`BlendMix`,
:class:`MixCollate`, the core in :mod:`torchvision_mix.masks` and the feature
extractors in :mod:`torchvision_mix.attention`.
"""

from . import attention, masks
from ._base import BlendMix, MaskMix, UnsupportedInputError
from ._mixes.attentive import AttentiveCutMix
from ._mixes.cutmix import CutMix
from ._mixes.fmix import FMix
from ._mixes.gridmix import GridMix
from ._mixes.mixup import MixUp
from ._mixes.randommix import RandomMix
from ._mixes.saliencymix import SaliencyMix
from .collate import MixCollate

__version__ = "0.1.0"

__all__ = [
    "AttentiveCutMix",
    "BlendMix",
    "CutMix",
    "FMix",
    "GridMix",
    "MaskMix",
    "MixCollate",
    "MixUp",
    "RandomMix",
    "SaliencyMix",
    "UnsupportedInputError",
    "__version__",
    "attention",
    "masks",
]
