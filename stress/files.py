"""Writing output files atomically: complete or absent, never truncated."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def replaced_atomically(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; once the block succeeds it becomes ``path``.

    The temporary file sits beside ``path`` and is renamed over it, so an
    interrupted or failed write leaves the old file (or none) behind, never a
    truncated one. A ``path`` that is a symbolic link (``/dev/stdout``) or
    exists but is not a regular file (a device, a pipe) is written through
    instead: renaming over it would replace the link or the device, not what
    it names. ``OSError`` on failure; the temporary file is always removed.
    """
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        with tempfile.TemporaryDirectory() as tmp:
            staged = Path(tmp) / "staged"
            yield staged
            with open(staged, "rb") as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst)
        return
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    staged = Path(name)
    try:
        yield staged
        umask = os.umask(0)  # read it: mkstemp made the file 0600, a new file should honour the umask
        os.umask(umask)
        os.chmod(staged, 0o666 & ~umask)
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)
