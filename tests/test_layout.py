"""The layering rules of the package, read from its source.

* No module imports an underscore name from a public-named module: shared private code lives
  in underscore-named modules (``_core/_kernels.py``, ``_core/_checks.py``, ...).
* The built-in mixes (``_mixes/``) are written on the public extension API: none defines a
  private method of the bases it derives from.
"""

import ast
import pathlib

import torchvision_mix
from torchvision_mix._base import BlendMix, MaskMix, _MixBase

PACKAGE = pathlib.Path(torchvision_mix.__file__).parent


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(path: pathlib.Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def sources(planted=None):
    """Every module's path and text; ``planted`` maps a path to text appended to it."""
    planted = planted or {}
    return [(path, path.read_text() + planted.get(path, "")) for path in sorted(PACKAGE.rglob("*.py"))]


def private_imports_from_public_modules(planted=None) -> list[str]:
    found = []
    for path, text in sources(planted):
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = resolve(path, node)
            if not source.startswith("torchvision_mix") or source.split(".")[-1].startswith("_"):
                continue
            target = PACKAGE.joinpath(*source.split(".")[1:])
            for alias in node.names:
                # `from .pkg import _module` names a private module: allowed.
                is_module = (target / f"{alias.name}.py").exists() or (target / alias.name).is_dir()
                if alias.name.startswith("_") and not is_module:
                    found.append(f"{path.relative_to(PACKAGE)}: {alias.name} from {source}")
    return found


def test_no_private_name_is_imported_from_a_public_named_module():
    assert private_imports_from_public_modules() == []


def test_the_checks_see_what_they_guard_against():
    cutmix = PACKAGE / "_mixes" / "cutmix.py"
    planted = {cutmix: "\nfrom ..masks import _hidden\nfrom .._core.apply import _x\nfrom .._core import _checks\n"}
    assert private_imports_from_public_modules(planted) == [
        "_mixes/cutmix.py: _hidden from torchvision_mix.masks",
        "_mixes/cutmix.py: _x from torchvision_mix._core.apply",
    ]
    planted = {cutmix: "\nclass Mine(MaskMix):\n    def _build(self, *a):\n        pass\n"}
    assert private_hooks_overridden(planted) == ["cutmix.py: Mine._build"]


def private_hooks_overridden(planted=None) -> list[str]:
    hooks = {
        name
        for cls in (_MixBase, MaskMix, BlendMix)
        for name, value in vars(cls).items()
        if name.startswith("_") and not name.startswith("__") and callable(value)
    }
    found = []
    for path, text in sources(planted):
        if path.parent.name != "_mixes":
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name in hooks:
                        found.append(f"{path.name}: {node.name}.{item.name}")
    return found


def test_no_builtin_mix_defines_a_private_method_of_the_bases():
    assert {"_build", "_draw_apply", "_checked_masks"} <= {
        n for c in (_MixBase, MaskMix) for n in vars(c)
    }  # the bases have private methods to guard
    assert private_hooks_overridden() == []
