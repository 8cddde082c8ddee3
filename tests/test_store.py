"""Tests for :mod:`waiter_service.runs.store`."""

import json
import os
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from waiter_service.runs.record import RunRecord
from waiter_service.runs.store import (
    RECORD_NAME,
    RunExists,
    RunStore,
    UnsafePath,
    atomic_write,
    read_capped,
)

SERVICE_ID = "bff13094b0988e404713177921198f5f_0"


class RunStoreTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = RunStore(Path(self.mktemp()) / "work")
        self.store.prepare()

    def test_prepare_creates_the_folder(self) -> None:
        """prepare makes the work folder and its parents, and may be called again."""
        root = Path(self.mktemp()) / "a" / "b"
        store = RunStore(root)
        store.prepare()
        store.prepare()
        self.assertTrue(root.is_dir())
        self.assertEqual(store.root, root.resolve())

    def test_create_makes_the_run_folder(self) -> None:
        """create makes an empty folder named by the serviceID, directly in the root."""
        path = self.store.create(SERVICE_ID)
        self.assertEqual(path, self.store.root / SERVICE_ID)
        self.assertTrue(path.is_dir())
        self.assertEqual(list(path.iterdir()), [])

    def test_create_twice_raises(self) -> None:
        """A serviceID whose folder is there already cannot be created again."""
        self.store.create(SERVICE_ID)
        self.assertRaises(RunExists, self.store.create, SERVICE_ID)

    def test_unsafe_ids_are_refused(self) -> None:
        """Ids that are paths, or not ids at all, raise UnsafePath."""
        for service_id in ("../x", "/abs", "a/b", "", ".", "..", None):
            self.assertRaises(UnsafePath, self.store.folder, service_id)
            self.assertRaises(UnsafePath, self.store.create, service_id)
        self.assertEqual(list(self.store.root.iterdir()), [])

    def test_folder_is_always_a_direct_child_of_the_root(self) -> None:
        """An accepted id, even one with dots inside, names a folder directly in the root."""
        for service_id in (SERVICE_ID, "a..b", "a.", "x" * 128):
            path = self.store.folder(service_id)
            self.assertEqual(path.parent, self.store.root)
            self.assertEqual(path.resolve().parent, self.store.root)

    def test_save_writes_a_readable_record(self) -> None:
        """save writes run.json, which from_dict reads back as the same record."""
        folder = self.store.create(SERVICE_ID)
        record = RunRecord(SERVICE_ID, "Waiter", {"secondsToWait": 5}, created_at=12.5)
        record.record_progress(30, "going")
        self.store.save(record)
        record.fail("the program failed", 20.0, exit_code=1, output_tail=["oops"])
        self.store.save(record)
        data = json.loads((folder / RECORD_NAME).read_bytes())
        self.assertEqual(RunRecord.from_dict(data).to_dict(), record.to_dict())
        self.assertEqual(sorted(p.name for p in folder.iterdir()), [RECORD_NAME])

    def test_discard_removes_folder_and_content(self) -> None:
        """discard removes the run's folder with everything in it."""
        folder = self.store.create(SERVICE_ID)
        (folder / "result").write_text("x")
        (folder / "sub").mkdir()
        (folder / "sub" / "deep").write_text("y")
        self.store.discard(SERVICE_ID)
        self.assertFalse(folder.exists())

    def test_discard_of_missing_run_is_quiet(self) -> None:
        """Discarding a run that has no folder does nothing."""
        self.store.discard(SERVICE_ID)
        self.assertEqual(list(self.store.root.iterdir()), [])

    def test_discard_does_not_follow_links_inside(self) -> None:
        """Links inside a run's folder are removed, not the files they point at."""
        outside = Path(self.mktemp())
        outside.mkdir()
        (outside / "precious").write_text("keep me")
        folder = self.store.create(SERVICE_ID)
        (folder / "file-link").symlink_to(outside / "precious")
        (folder / "dir-link").symlink_to(outside)
        self.store.discard(SERVICE_ID)
        self.assertFalse(folder.exists())
        self.assertEqual((outside / "precious").read_text(), "keep me")

    def test_discard_does_not_follow_a_linked_run_folder(self) -> None:
        """A run folder that is a link to elsewhere does not get that place emptied."""
        outside = Path(self.mktemp())
        outside.mkdir()
        (outside / "precious").write_text("keep me")
        (self.store.root / SERVICE_ID).symlink_to(outside)
        self.store.discard(SERVICE_ID)
        self.assertEqual((outside / "precious").read_text(), "keep me")


class AtomicWriteTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.folder = Path(self.mktemp())
        self.folder.mkdir()
        self.path = self.folder / "run.json"

    def test_writes_and_replaces(self) -> None:
        """The file gets the new content whole, and no temporary file stays."""
        atomic_write(self.path, b"old")
        atomic_write(self.path, b"new content")
        self.assertEqual(self.path.read_bytes(), b"new content")
        self.assertEqual(os.listdir(self.folder), ["run.json"])

    def test_failure_keeps_old_content(self) -> None:
        """When the rename fails the old content stays and the temporary file is removed."""
        atomic_write(self.path, b"old")

        def failing_replace(src: object, dst: object) -> None:
            raise OSError("disk trouble")

        self.patch(os, "replace", failing_replace)
        self.assertRaises(OSError, atomic_write, self.path, b"new")
        self.assertEqual(self.path.read_bytes(), b"old")
        self.assertEqual(os.listdir(self.folder), ["run.json"])

    def test_refuses_link_at_temporary_path(self) -> None:
        """A link planted at the temporary name is not followed, so its target is safe."""
        target = self.folder / "target"
        target.write_bytes(b"untouched")
        tmp = self.folder / f".run.json.{os.getpid()}.tmp"
        tmp.symlink_to(target)
        self.assertRaises(OSError, atomic_write, self.path, b"new")
        self.assertEqual(target.read_bytes(), b"untouched")
        self.assertFalse(self.path.exists())


class ReadCappedTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.folder = Path(self.mktemp())
        self.folder.mkdir()
        self.path = self.folder / "result"

    def test_content_up_to_the_limit(self) -> None:
        """A file no larger than the limit is read whole."""
        self.path.write_bytes(b"0123456789")
        self.assertEqual(read_capped(self.path, 100), b"0123456789")
        self.assertEqual(read_capped(self.path, 10), b"0123456789")

    def test_over_the_limit_raises(self) -> None:
        """A file larger than the limit raises ValueError."""
        self.path.write_bytes(b"0123456789")
        self.assertRaises(ValueError, read_capped, self.path, 9)

    def test_refuses_a_link(self) -> None:
        """A link is not followed: reading it raises OSError."""
        target = self.folder / "secret"
        target.write_bytes(b"secret")
        self.path.symlink_to(target)
        self.assertRaises(OSError, read_capped, self.path, 100)

    def test_missing_file_raises(self) -> None:
        """A missing file raises FileNotFoundError."""
        self.assertRaises(FileNotFoundError, read_capped, self.path, 100)


class SpecialFileTests(SynchronousTestCase):
    def test_fifo_is_refused_without_blocking(self) -> None:
        """A FIFO in place of a result is refused at once, never read (it would block)."""
        folder = Path(self.mktemp())
        folder.mkdir()
        os.mkfifo(folder / "result")
        self.assertRaises(ValueError, read_capped, folder / "result", 100)
