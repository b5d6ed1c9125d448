"""Tools to property-test mixing transforms, ours or your own.

* :func:`check_mix_transform`: a black-box checker of the invariants every batch-mixing
  transform must keep, pastes and blends (needs nothing but torch and torchvision).
* :class:`MixInputs`: one drawn input (the call's arguments and what they hold).
* :mod:`torchvision_mix.testing.strategies`: Hypothesis strategies for image batches, labels,
  segmentation masks and whole mix inputs in every structure a transform takes (needs the
  ``test`` extra: ``pip install "torchvision-mix[test]"``).
"""

from ._cases import MixInputs
from ._checks import MIX_KINDS, MixCheckError, MixReport, check_mix_transform
from ._labels import LABEL_RULES

__all__ = ["LABEL_RULES", "MIX_KINDS", "MixCheckError", "MixInputs", "MixReport", "check_mix_transform"]
