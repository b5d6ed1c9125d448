"""Sphinx configuration: ``sphinx-build -W -b html docs docs/_build/html``."""

import os
import sys

sys.path.insert(0, os.path.abspath("../src"))

project = "torchvision-mix"
author = "torchvision-mix contributors"
copyright = "2026, torchvision-mix contributors"
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]
html_theme = "furo"
html_static_path = ["_static"]
html_title = "torchvision-mix"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Links go to the live sites; the inventories are small local files (CI builds offline), written by
# _intersphinx/make_inventories.py for the objects these docs reference.
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", "_intersphinx/python.inv"),
    "torch": ("https://docs.pytorch.org/docs/stable", "_intersphinx/torch.inv"),
    "torchvision": ("https://docs.pytorch.org/vision/stable", "_intersphinx/torchvision.inv"),
}
exclude_patterns = ["_build", "_intersphinx"]
