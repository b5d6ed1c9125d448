"""The shared core of every mix, in its three stages: :mod:`.sample`, :mod:`.build`, :mod:`.apply`.

Pure functions on tensors, no ``Transform`` and no global state; :mod:`torchvision_mix.masks` is
their public face. :mod:`.labels` mixes the labels by what :mod:`.apply` measured.
"""
