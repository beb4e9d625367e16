"""Content digests that make up a run's fingerprint besides its settings (defaults.py).

A resumed run keeps a finished frame only when it would come out the same now. Besides the
settings and the style images, that depends on the engine's own code (an upgrade or a bug
fix changes pixels) and on the weights file's content (another file at the same path
does). Everything here is a hex string of 16 digits.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os

from . import __version__

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
CACHE_NAME = "weights_digest.json"  # in the output folder's .flowstyle/: {path: [size, mtime, digest]}


@functools.lru_cache(maxsize=None)
def source_digest(package_dir: str = PACKAGE_DIR) -> str:
    """Digest of the engine's version and every *.py file of the package (computed once
    per process: about 25 ms). Names count as well as contents, so a moved file counts."""
    h = hashlib.sha256(__version__.encode())
    for folder, dirs, files in os.walk(package_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(folder, name)
            h.update(os.path.relpath(path, package_dir).replace(os.sep, "/").encode() + b"\0")
            with open(path, "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()[:16]


def file_digest(path: str) -> str:
    """SHA-256 of a file's content (about 55 ms for the 20 MB Caffe weights on one core)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def weights_digest(path: str, cache_dir: str | None = None) -> str:
    """`file_digest` of a weights file, remembered in `cache_dir` by (path, size, mtime).

    The 548 MB torchvision file takes over a second to hash; a rerun on the same folder
    reads the digest back instead. Any change of size or modification time hashes anew, so
    a replaced file is always noticed. A cache that cannot be read or written is ignored.
    """
    st = os.stat(path)
    key, stamp = os.path.abspath(path), [st.st_size, st.st_mtime_ns]
    cache_file = os.path.join(cache_dir, CACHE_NAME) if cache_dir else None
    cache: dict = {}
    if cache_file:
        try:
            with open(cache_file, encoding="utf-8") as f:
                cache = json.load(f)
            if cache.get(key, [None] * 3)[:2] == stamp:
                return str(cache[key][2])
        except (OSError, ValueError, TypeError, AttributeError):
            cache = {}
    digest = file_digest(path)
    if cache_file:
        try:
            tmp = cache_file + ".partial"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({**cache, key: stamp + [digest]}, f)
            os.replace(tmp, cache_file)
        except OSError:
            pass
    return digest
