"""The alpaca-eval package (dev extra), the reference that tests check AlpacaEval figures and
formats against."""

import sys
import types

import pytest


def import_alpaca_eval(module: str):
    """A module of the alpaca-eval package (dev extra), or skip. alpaca-eval 0.6.6 imports
    pkg_resources (gone from recent setuptools) for two version helpers we never call, so a
    stand-in is present while it imports."""
    pytest.importorskip("sklearn", reason="alpaca-eval (dev extra) is not installed")
    with pytest.MonkeyPatch.context() as patch:
        try:
            import pkg_resources  # noqa: F401
        except ImportError:
            patch.setitem(sys.modules, "pkg_resources", types.ModuleType("pkg_resources"))
        return pytest.importorskip(module, reason="alpaca-eval (dev extra) is not installed")
