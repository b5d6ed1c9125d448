"""One module per mix, each built on the bases in :mod:`torchvision_mix._base`."""
