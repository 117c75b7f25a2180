"""Compiling a C++ extension on first use into the user's cache directory.

An extension is built with the system's C++ compiler (``$CXX`` or ``g++``) against the XLA FFI
headers jaxlib ships and a library installed in this Python environment (its ``lib/`` and
``include/``, where wheels such as ``onednn-cpu-gomp`` put them), and linked with that
library's directory as its run path, so it loads without ``LD_LIBRARY_PATH``. The file is named
by a hash of everything it depends on (source, compiler flags, jaxlib and library versions), so
a changed source or upgraded package builds a new one; it is written under a temporary name and
renamed into place, so concurrent processes never load a half-written file. Whatever is missing
raises ``Unavailable`` with the reason; nothing here runs at install time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import jax
import jaxlib

SOURCES = Path(__file__).resolve().parent
CACHE_ENV = "COLORJAX_CACHE_DIR"
FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-fopenmp", "-w")


class Unavailable(RuntimeError):
    """The extension cannot be built or loaded here; the message says why."""


def cache_dir() -> Path:
    """``$COLORJAX_CACHE_DIR``, else ``~/.cache/colorjax`` (``$XDG_CACHE_HOME`` honoured)."""
    if CACHE_ENV in os.environ:
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "colorjax"


def environment_prefixes() -> list[Path]:
    """Where pip puts a wheel's ``lib/`` and ``include/`` for this interpreter."""
    candidates = [sysconfig.get_paths()["data"], sys.prefix, sysconfig.get_config_var("userbase")]
    return list(dict.fromkeys(Path(p) for p in candidates if p))


def find_library(name: str, header: str) -> tuple[Path, Path]:
    """The (lib, include) directories of this environment holding ``lib<name>.so`` and
    ``header``."""
    for prefix in environment_prefixes():
        lib, include = prefix / "lib", prefix / "include"
        if (lib / f"lib{name}.so").exists() and (include / header).exists():
            return lib, include
    raise Unavailable(f"lib{name}.so and {header} are not installed in {sys.prefix}")


def compiler() -> str:
    """The C++ compiler: ``$CXX``, else ``g++``."""
    name = os.environ.get("CXX", "g++")
    path = shutil.which(name)
    if path is None:
        raise Unavailable(f"no C++ compiler ({name!r} is not on PATH)")
    return path


def built_extension(source: str, library: str, header: str, version_header: str) -> Path:
    """The shared object compiled from ``SOURCES / source`` and linked with ``lib<library>``
    (found with its ``header``; ``version_header`` names its version), built now unless the
    cache already holds it."""
    lib, include = find_library(library, header)
    versions = (include / version_header).read_bytes()
    code = (SOURCES / source).read_bytes()
    identity = [code, versions, *map(str.encode, (*FLAGS, jaxlib.__version__, str(lib)))]
    digest = hashlib.sha256(b"\0".join(identity)).hexdigest()[:16]
    target = cache_dir() / f"{Path(source).stem}-{digest}.so"
    if not target.exists():
        _compile(SOURCES / source, target, library, lib, include)
    return target


def _compile(source: Path, target: Path, library: str, lib: Path, include: Path) -> None:
    cxx = compiler()
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=target.parent, suffix=".so.partial")
    os.close(handle)
    command = [
        cxx,
        *FLAGS,
        f"-I{jax.ffi.include_dir()}",
        f"-I{include}",
        str(source),
        "-o",
        partial,
        f"-L{lib}",
        f"-l{library}",
        f"-Wl,-rpath,{lib}",
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise Unavailable(f"compiling {source.name} failed:\n{done.stderr[-2000:]}")
        os.replace(partial, target)
    finally:
        Path(partial).unlink(missing_ok=True)
