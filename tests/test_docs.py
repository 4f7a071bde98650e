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
