"""Write small Sphinx inventories (objects.inv format) for the torch, torchvision and Python objects
these docs link to, so that intersphinx links resolve in an offline build (CI has no internet).

Run ``python docs/_intersphinx/make_inventories.py`` after adding a cross-reference to a new object.
"""

import pathlib
import zlib

HERE = pathlib.Path(__file__).parent

INVENTORIES = {
    "python": [
        ("ValueError", "py:exception", "library/exceptions.html#$"),
        ("TypeError", "py:exception", "library/exceptions.html#$"),
        ("RuntimeError", "py:exception", "library/exceptions.html#$"),
        ("AssertionError", "py:exception", "library/exceptions.html#$"),
    ],
    "torch": [
        ("torch.Generator", "py:class", "generated/torch.Generator.html#$"),
        ("torch.Tensor", "py:class", "tensors.html#$"),
        ("torch.autocast", "py:class", "amp.html#$"),
        ("torch.nn.Module", "py:class", "generated/torch.nn.Module.html#$"),
        ("torch.nn.functional.one_hot", "py:function", "generated/torch.nn.functional.one_hot.html#$"),
        ("torch.utils.data.default_collate", "py:function", "data.html#$"),
        ("torch.distributions.Beta", "py:class", "distributions.html#torch.distributions.beta.Beta"),
    ],
    "torchvision": [
        ("torchvision.transforms.v2", "py:module", "transforms.html#module-$"),
        ("torchvision.transforms.v2.Transform", "py:class", "generated/$.html#$"),
        ("torchvision.transforms.v2.CutMix", "py:class", "generated/$.html#$"),
        ("torchvision.transforms.v2.MixUp", "py:class", "generated/$.html#$"),
        ("torchvision.tv_tensors.Image", "py:class", "generated/$.html#$"),
        ("torchvision.tv_tensors.Video", "py:class", "generated/$.html#$"),
        ("torchvision.tv_tensors.Mask", "py:class", "generated/$.html#$"),
        ("torchvision.models.get_model", "py:function", "generated/$.html#$"),
    ],
}


def write(project: str, entries: list[tuple[str, str, str]]) -> None:
    header = f"# Sphinx inventory version 2\n# Project: {project}\n# Version: stable\n"
    header += "# The remainder of this file is compressed using zlib.\n"
    body = "".join(
        f"{name} {role} 1 {uri.replace('$', name) if uri.count('$') > 1 else uri} -\n" for name, role, uri in entries
    )
    (HERE / f"{project}.inv").write_bytes(header.encode() + zlib.compress(body.encode()))


if __name__ == "__main__":
    for project, entries in INVENTORIES.items():
        write(project, entries)
