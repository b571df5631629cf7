"""Atomic writes: a crash never leaves a file that looks complete; the temporary file a killed
write leaves (``.<name>.<random>.tmp``) is removed by the next run of the same command."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

_UMASK = os.umask(0)
os.umask(_UMASK)


def temporary_prefix(name: str) -> str:
    """The start of the temporary name an atomic write of ``name`` uses (``.model.pt.``)."""
    return f".{name}."


TEMPORARY_SUFFIX = ".tmp"


def is_temporary(name: str) -> bool:
    """Whether a file name is a temporary of :func:`atomic_path` (``.<name>.<random>.tmp``)."""
    return name.startswith(".") and name.endswith(TEMPORARY_SUFFIX) and name.count(".") >= 3


def stale_temporaries(path: str | Path) -> list[Path]:
    """Temporary files an atomic write of ``path`` left beside it when its process was killed."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(path.parent.glob(f"{glob.escape(temporary_prefix(path.name))}*{TEMPORARY_SUFFIX}"))


def remove_temporaries(paths: Iterable[str | Path]) -> list[Path]:
    """Remove what killed atomic writes of ``paths`` left (call it where no other process writes them)."""
    removed = [tmp for path in paths for tmp in stale_temporaries(path)]
    for tmp in removed:
        tmp.unlink(missing_ok=True)
    return removed


@contextmanager
def naming_the_path(path: Path) -> Iterator[None]:
    """An OSError of the block names ``path``: writes that fail on a full disk name no file, and
    one on its temporary would name a file the user never asked for."""
    try:
        yield
    except OSError as err:
        if err.filename is not None and not Path(err.filename).name.startswith(temporary_prefix(path.name)):
            raise
        raise type(err)(err.errno, err.strerror or str(err), str(path)) from err


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.
    An OSError on the way (a full disk, a folder one cannot write) names ``path``."""
    path = Path(path)
    with naming_the_path(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=temporary_prefix(path.name), suffix=TEMPORARY_SUFFIX, dir=path.parent)
        os.close(fd)
    tmp = Path(tmp_name)
    try:
        with naming_the_path(path):
            yield tmp
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- several files put in place together ------------------------------------------------------


class FileGroup:
    """Files built aside, each in a temporary file beside its path, and put in place together
    (:func:`written_together`): a failure while any is written (a full disk, a folder one cannot
    write) leaves every earlier file as it was, and no temporary."""

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []  # (temporary, path)
        self._removed: list[Path] = []

    def path(self, path: str | Path) -> Path:
        """A temporary path to write ``path``'s content to (a killed earlier build's temporaries go)."""
        path = Path(path)
        with naming_the_path(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_temporaries([path])
            fd, tmp_name = tempfile.mkstemp(prefix=temporary_prefix(path.name), suffix=TEMPORARY_SUFFIX, dir=path.parent)
            os.close(fd)
        self._staged.append((Path(tmp_name), path))
        return Path(tmp_name)

    def text(self, path: str | Path, text: str) -> None:
        tmp = self.path(path)
        with naming_the_path(Path(path)):
            tmp.write_text(text)

    def json(self, path: str | Path, obj) -> None:
        self.text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")

    def remove(self, path: str | Path) -> None:
        """Remove ``path`` (a stale file) when the others are put in place, not before."""
        self._removed.append(Path(path))

    def commit(self) -> None:
        for tmp, path in self._staged:
            with naming_the_path(path):
                os.chmod(tmp, 0o666 & ~_UMASK)
        for tmp, path in self._staged:
            with naming_the_path(path):
                os.replace(tmp, path)
        self._staged = []
        for path in self._removed:
            path.unlink(missing_ok=True)

    def discard(self) -> None:
        for tmp, _ in self._staged:
            tmp.unlink(missing_ok=True)
        self._staged = []


@contextmanager
def written_together() -> Iterator[FileGroup]:
    """Write a result of several files whole or not at all: what the block writes through the
    group is put in place when the block succeeds; nothing is, when it fails."""
    group = FileGroup()
    try:
        yield group
        group.commit()
    finally:
        group.discard()
