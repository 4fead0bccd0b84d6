"""The alpaca-eval package (a dependency: AlpacaEval 2.0 reads its annotator and LC win rate from
it), the reference that tests check AlpacaEval figures and formats against."""

from inpo.benchmarks.alpaca_eval import package


def import_alpaca_eval(module: str):
    """A module of the alpaca-eval package (its pkg_resources deprecation warning silenced)."""
    return package(module)
