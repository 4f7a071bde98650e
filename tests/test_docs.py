"""Every docstring example runs (doctest), and every public name is documented."""
import doctest
import importlib

import pytest

import fusedopt

MODULES = ["fusedopt", "fusedopt._losses", "fusedopt._optim", "fusedopt._runtime",
           "fusedopt.reference", "fusedopt._demo"]


@pytest.mark.parametrize("name", MODULES + ["fusedopt.torch", "fusedopt.torch.functional",
                                            "fusedopt._checkpoint"])
def test_doctests(name):
    if name.startswith("fusedopt.torch"):
        pytest.importorskip("torch")
    mod = importlib.import_module(name)
    failed, attempted = doctest.testmod(mod, optionflags=doctest.ELLIPSIS |
                                        doctest.NORMALIZE_WHITESPACE)
    assert failed == 0


def test_public_api_is_documented_with_examples():
    for name in fusedopt.__all__:
        obj = getattr(fusedopt, name)
        if name.startswith("__") or isinstance(obj, (str, tuple)):
            continue
        doc = obj.__doc__ or ""
        assert len(doc) > 40, f"{name} has no docstring"
        assert ">>>" in doc, f"{name}'s docstring has no example"


def test_torch_adapter_classes_have_examples():
    pytest.importorskip("torch")
    import fusedopt.torch as ft
    for cls in ft.FRONT_END.values():
        assert ">>>" in (cls.__doc__ or ""), cls


def test_python_versions_claimed_are_one_range():
    """requires-python's floor is the lowest version classifier, and the classifiers name
    every minor version from there to the highest (the wheels built and tested)."""
    import pathlib
    import re
    import tomllib
    path = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"
    if not path.exists():
        pytest.skip("no pyproject.toml beside the tests")
    project = tomllib.loads(path.read_text())["project"]
    minors = sorted(int(m.group(1)) for c in project["classifiers"]
                    if (m := re.fullmatch(r"Programming Language :: Python :: 3\.(\d+)", c)))
    assert minors == list(range(minors[0], minors[-1] + 1)), minors
    assert project["requires-python"] == f">=3.{minors[0]}"
