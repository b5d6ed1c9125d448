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
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "torch": ("https://docs.pytorch.org/docs/stable", None),
    "torchvision": ("https://docs.pytorch.org/vision/stable", None),
}
# The build must pass offline (CI has no internet): a missing inventory is not an error there.
intersphinx_disabled_reftypes = ["*"]
nitpicky = False
exclude_patterns = ["_build"]
suppress_warnings = ["intersphinx"]
