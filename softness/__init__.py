"""glass-softness: glass-forming liquids (BKS silica, the Kob-Andersen mixture, or a system of
your own in ``softness.systems``) with JAX MD, machine-learned softness and the
strong-to-fragile crossover (Cubuk, Liu, Kaxiras, Schoenholz, arXiv:2008.09681).

Every stage of the pipeline is a plain function in one of the submodules; the
``softness`` command line (``softness.cli``) and the Snakemake workflow only call them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("glass-softness")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

from softness.errors import SoftnessError  # noqa: E402

__all__ = ["SoftnessError", "__version__"]
