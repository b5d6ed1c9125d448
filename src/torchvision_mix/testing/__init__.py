"""Tools to property-test mixing transforms, ours or your own.

* :func:`check_mix_transform`: a black-box checker of the invariants every pixel-pasting mix
  must keep (needs nothing but torch).
* :mod:`torchvision_mix.testing.strategies`: Hypothesis strategies for image batches, labels and
  whole mix inputs (needs the ``test`` extra: ``pip install "torchvision-mix[test]"``).
"""

from ._checks import MixCheckError, MixReport, check_mix_transform

__all__ = ["MixCheckError", "MixReport", "check_mix_transform"]
