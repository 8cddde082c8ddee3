"""
The work folder: one folder per run, named by its (checked) serviceID.

Each run's folder holds ``run.json`` (its record, always replaced whole by
an atomic rename, so a reader never sees half a record) and whatever files
its program writes.  Nothing is ever written outside the work folder: a
folder name is a serviceID that passed :func:`check_service_id`, and the
resolved path is checked to be a direct child of the work folder.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

from ..validation import InvalidInput, check_service_id
from .record import CorruptRecord, RunRecord

RECORD_NAME = "run.json"
#: Largest run.json read back (they are a few hundred bytes).
MAX_RECORD_BYTES = 1024 * 1024


class RunExists(Exception):
    """A folder for this serviceID is already there."""


class UnsafePath(Exception):
    """A path that would leave the work folder."""


class RunStore:
    """The work folder of a server, and the records in it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def prepare(self) -> None:
        """Create the work folder if it is missing."""
        self.root.mkdir(mode=0o750, parents=True, exist_ok=True)

    def folder(self, service_id: str) -> Path:
        """The folder of a run; raises UnsafePath for a bad serviceID."""
        try:
            check_service_id(service_id)
        except ValueError:
            raise UnsafePath(service_id) from None
        path = self.root / service_id
        if path.parent != self.root:
            raise UnsafePath(service_id)
        return path

    def create(self, service_id: str) -> Path:
        """Make a new, empty folder for a run; RunExists if it is there."""
        path = self.folder(service_id)
        try:
            path.mkdir(mode=0o750)
        except FileExistsError:
            raise RunExists(service_id) from None
        return path

    def discard(self, service_id: str) -> None:
        """Remove a run's folder and everything in it (best effort)."""
        shutil.rmtree(self.folder(service_id), ignore_errors=True)

    def run_ids(self) -> list[str]:
        """The serviceIDs of the run folders in the work folder, sorted."""
        ids = []
        for entry in self.root.iterdir():
            try:
                check_service_id(entry.name)
            except InvalidInput:
                continue
            if entry.is_dir() and not entry.is_symlink():
                ids.append(entry.name)
        return sorted(ids)

    def load(self, service_id: str) -> RunRecord:
        """Read a run's record; CorruptRecord if it is torn, garbage or foreign."""
        path = self.folder(service_id) / RECORD_NAME
        try:
            data = json.loads(read_capped(path, MAX_RECORD_BYTES))
        except FileNotFoundError:
            raise CorruptRecord("the run has no record") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise CorruptRecord(f"the record is not valid JSON: {e}") from None
        record = RunRecord.from_dict(data)
        if record.service_id != service_id:
            raise CorruptRecord("the record belongs to another serviceID")
        return record

    def salvage_owner(self, service_id: str) -> dict[str, str]:
        """
        From a record that cannot be loaded, whatever still tells whose run
        it is (owner_user, owner_project, auth_url), so that its owner, and
        only its owner, hears that it failed.
        """
        try:
            data = json.loads(read_capped(self.folder(service_id) / RECORD_NAME, MAX_RECORD_BYTES))
        except (OSError, ValueError, UnicodeDecodeError):
            return {}
        if not isinstance(data, dict):
            return {}
        keys = ("owner_user", "owner_project", "auth_url")
        return {k: data[k] for k in keys if isinstance(data.get(k), str)}

    def set_aside(self, service_id: str) -> None:
        """Keep a bad record as ``run.json.corrupt`` for whoever investigates."""
        path = self.folder(service_id) / RECORD_NAME
        try:
            os.replace(path, path.with_name(RECORD_NAME + ".corrupt"))
        except FileNotFoundError:
            pass

    def save(self, record: RunRecord) -> None:
        """
        Write ``record`` as the run's ``run.json``, atomically.

        A final record is also flushed to the disk (``fsync``) before it
        replaces the old one: a result must survive a power cut.  Progress
        records are not, to keep the reactor free of disk waits.
        """
        folder = self.folder(record.service_id)
        data = json.dumps(record.to_dict(), separators=(",", ":")).encode("utf-8")
        atomic_write(folder / RECORD_NAME, data, durable=record.state.is_terminal)


def atomic_write(path: Path, data: bytes, durable: bool = False) -> None:
    """
    Replace ``path`` with ``data`` so that readers see the old or the new
    content, never a part: write a temporary file beside it, then rename.
    With ``durable``, the content is on the disk before the rename.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o640)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            _fsync_folder(path.parent)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_capped(path: Path, limit: int) -> bytes:
    """
    Read at most ``limit`` bytes of the regular file ``path``; ValueError
    if it is larger or not a regular file (a FIFO would block the reactor),
    OSError for a symlink.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path.name} is not a regular file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path.name} is larger than {limit} bytes")
    return data
