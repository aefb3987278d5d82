"""HDF5 products: atomic writes, provenance, and clear errors on bad inputs.

Every stage writes exactly one HDF5 file. It is written to a temporary file in the
same directory and renamed into place only when complete, so an interrupted stage
never leaves a half-written product behind. The root group carries the provenance:
the stage name, the fully resolved config (JSON), the package version and the git
revision of the code that made it.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import os
import subprocess
from pathlib import Path

import h5py
import numpy as np

from softness import __version__
from softness.errors import SoftnessError


@functools.cache
def git_revision() -> str:
    """The git revision of the source tree this package runs from ("unknown" outside git).

    A ``-dirty`` suffix marks uncommitted changes, so a product made from modified
    code says so.
    """
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "describe", "--always", "--dirty", "--abbrev=40"],
            capture_output=True, text=True, timeout=10, check=True,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(stage: str, config: dict | None) -> dict:
    """Attributes recorded on the root of every product."""
    return {
        "stage": stage,
        "config": json.dumps(config if config is not None else {}, sort_keys=True),
        "softness_version": __version__,
        "git_revision": git_revision(),
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def temporary_path(path: Path) -> Path:
    """Where a product is written before it is renamed into ``path``."""
    return path.with_name(f".{path.name}.partial")


def write_text_atomic(path: Path, text: str) -> None:
    """A small text record (e.g. why a run failed), renamed into place when written."""
    path = Path(path)
    tmp = temporary_path(path)
    tmp.write_text(text)
    os.replace(tmp, path)


def place_product(src: Path, out: Path) -> None:
    """A finished product made under another name, given its place: a hard link (no copy,
    the source stays valid) where the file system allows, else a copy renamed into place."""
    src, out = Path(src), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(out)
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        import shutil

        shutil.copyfile(src, tmp)
    os.replace(tmp, out)


@contextlib.contextmanager
def atomic_h5(path, stage: str, config: dict | None):
    """Open a new HDF5 product for writing; it appears at ``path`` only on success.

    Args:
      path: final location of the product.
      stage: name of the stage writing it (stored as an attribute).
      config: the resolved config (stored as JSON).

    Yields:
      An open, writable ``h5py.File`` whose root already carries the provenance.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs.update(provenance(stage, config))
            yield f
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def open_input(path, what: str = "input") -> h5py.File:
    """Open an HDF5 input read-only, turning the usual failures into one clear sentence."""
    path = Path(path)
    if not path.exists():
        raise SoftnessError(f"{what} file {path} does not exist.")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise SoftnessError(f"{what} file {path} is not a readable HDF5 file ({exc}).") from None


def require(f: h5py.File, *names: str, what: str = "input") -> None:
    """Raise a clear error unless every dataset or group in ``names`` exists in ``f``."""
    for name in names:
        if name not in f:
            raise SoftnessError(f"{what} file {f.filename} has no '{name}'; is it the right kind of file?")


def stored_config(f: h5py.File) -> dict:
    """The resolved config a product was made with."""
    return json.loads(f.attrs.get("config", "{}"))


def check_finite(name: str, values, where: str) -> None:
    """Raise a clear error if ``values`` holds NaN or inf."""
    values = np.asarray(values)
    if not np.all(np.isfinite(values)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(values))[0])
        raise SoftnessError(f"{where}: '{name}' holds a non-finite value at index {bad}.")


def decode(value) -> str:
    """One stored string (h5py reads bytes or str) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_all(values) -> tuple[str, ...]:
    """Stored strings (a dataset or attribute of bytes or str, any shape, flattened) as str."""
    return tuple(decode(v) for v in np.asarray(values).ravel())


def system_attribute(attrs) -> str | None:
    """The root attribute ``system`` of a file (e.g. "silica") as str, or None if it has none
    (``attrs``: an h5py AttributeManager or a dict)."""
    system = attrs.get("system")
    return None if system is None else decode(system)
