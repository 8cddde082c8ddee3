"""Tests for :mod:`waiter_service.runs.record`."""

import json
import math

from twisted.trial.unittest import SynchronousTestCase

from waiter_service.runs.record import RECORD_FORMAT, CorruptRecord, RunRecord
from waiter_service.runs.state import InvalidTransition, RunState


def make_record() -> RunRecord:
    return RunRecord(
        service_id="bff13094b0988e404713177921198f5f_0",
        program="Waiter",
        inputs={"secondsToWait": 5},
        created_at=1000.0,
        state=RunState.RUNNING,
    )


class RecordProgressTests(SynchronousTestCase):
    def test_progress_is_kept_as_whole_percent(self) -> None:
        """A fractional percentage is stored as its whole part, with the message."""
        record = make_record()
        self.assertTrue(record.record_progress(42.9, "meshing"))
        self.assertEqual((record.percent, record.message), (42, "meshing"))
        self.assertIsInstance(record.percent, int)
        self.assertEqual(record.version, 1)

    def test_progress_is_clamped_to_0_and_100(self) -> None:
        """Reports above 100 (even infinite) count as 100, below 0 as 0."""
        record = make_record()
        record.record_progress(250)
        self.assertEqual(record.percent, 100)
        record.record_progress(-5)
        self.assertEqual(record.percent, 0)
        record.record_progress(math.inf)
        self.assertEqual(record.percent, 100)

    def test_nan_is_ignored(self) -> None:
        """A NaN report changes nothing and does not bump the version."""
        record = make_record()
        record.record_progress(10, "a")
        self.assertFalse(record.record_progress(math.nan, "b"))
        self.assertEqual((record.percent, record.message, record.version), (10, "a", 1))

    def test_invisible_change_does_not_bump_version(self) -> None:
        """A report that shows the same whole percent and message is not a change."""
        record = make_record()
        record.record_progress(42.1, "x")
        self.assertFalse(record.record_progress(42.8, "x"))
        self.assertFalse(record.record_progress(42.5))
        self.assertEqual(record.version, 1)

    def test_message_alone_is_a_change(self) -> None:
        """A new message with the same percent bumps the version."""
        record = make_record()
        record.record_progress(42, "x")
        self.assertTrue(record.record_progress(42, "y"))
        self.assertEqual((record.message, record.version), ("y", 2))

    def test_no_message_keeps_the_last_one(self) -> None:
        """A report without a message keeps the previous message."""
        record = make_record()
        record.record_progress(10, "meshing")
        record.record_progress(20)
        self.assertEqual((record.percent, record.message), (20, "meshing"))

    def test_progress_after_the_end_is_ignored(self) -> None:
        """Once a run has ended, progress reports change nothing."""
        record = make_record()
        record.fail("boom", now=1010.0)
        version = record.version
        self.assertFalse(record.record_progress(50, "late"))
        self.assertEqual((record.percent, record.message), (0, ""))
        self.assertEqual(record.version, version)


class RequestAbortTests(SynchronousTestCase):
    def test_first_request_bumps_version(self) -> None:
        """Asking to abort a running run is noted and is a visible change."""
        record = make_record()
        self.assertTrue(record.request_abort())
        self.assertTrue(record.abort_requested)
        self.assertEqual(record.version, 1)
        self.assertIs(record.state, RunState.RUNNING)

    def test_second_request_changes_nothing_more(self) -> None:
        """Asking again still answers True but does not bump the version."""
        record = make_record()
        record.request_abort()
        self.assertTrue(record.request_abort())
        self.assertEqual(record.version, 1)

    def test_request_after_the_end_is_refused(self) -> None:
        """An ended run cannot be aborted any more."""
        record = make_record()
        record.complete({"result": "eA=="}, now=1001.0)
        version = record.version
        self.assertFalse(record.request_abort())
        self.assertFalse(record.abort_requested)
        self.assertEqual(record.version, version)


class EndTests(SynchronousTestCase):
    def test_complete(self) -> None:
        """Completing stores a copy of the outputs, 100 %, the end time and exit 0."""
        record = make_record()
        record.record_progress(40)
        outputs = {"result": "V2FpdGVk"}
        record.complete(outputs, now=1005.0)
        outputs["result"] = "changed"
        self.assertIs(record.state, RunState.COMPLETED)
        self.assertEqual(record.outputs, {"result": "V2FpdGVk"})
        self.assertEqual(record.percent, 100)
        self.assertEqual(record.ended_at, 1005.0)
        self.assertEqual((record.exit_code, record.exit_signal), (0, None))
        self.assertEqual(record.version, 2)

    def test_fail(self) -> None:
        """Failing stores the reason, the exit status and a copy of the output tail."""
        record = make_record()
        tail = ["line 1", "line 2"]
        record.fail("the program failed", 1007.0, exit_code=3, output_tail=tail)
        tail.append("later")
        self.assertIs(record.state, RunState.FAILED)
        self.assertEqual(record.failure_reason, "the program failed")
        self.assertEqual((record.exit_code, record.exit_signal), (3, None))
        self.assertEqual(record.output_tail, ["line 1", "line 2"])
        self.assertEqual(record.ended_at, 1007.0)
        self.assertEqual(record.version, 1)

    def test_abort(self) -> None:
        """Aborting stores the end time, the signal and the output tail."""
        record = make_record()
        record.request_abort()
        record.abort(1003.0, exit_signal=15, output_tail=["bye"])
        self.assertIs(record.state, RunState.ABORTED)
        self.assertEqual((record.exit_code, record.exit_signal), (None, 15))
        self.assertEqual(record.output_tail, ["bye"])
        self.assertEqual(record.ended_at, 1003.0)
        self.assertIsNone(record.failure_reason)
        self.assertEqual(record.version, 2)

    def test_ended_record_refuses_a_second_end(self) -> None:
        """Every way of ending raises InvalidTransition on a record that has ended."""
        endings = {
            "complete": lambda r: r.complete({"result": ""}, 1100.0),
            "fail": lambda r: r.fail("again", 1100.0),
            "abort": lambda r: r.abort(1100.0),
        }
        for first in endings.values():
            for second in endings.values():
                record = make_record()
                first(record)
                state, version = record.state, record.version
                self.assertRaises(InvalidTransition, second, record)
                self.assertIs(record.state, state)
                self.assertEqual(record.version, version)

    def test_refused_end_leaves_every_field_alone(self) -> None:
        """A refused second end changes none of the record's fields."""
        record = make_record()
        record.fail("first reason", 1001.0, exit_code=1)
        before = record.to_dict()
        self.assertRaises(InvalidTransition, record.complete, {"result": "eA=="}, 1100.0)
        self.assertRaises(InvalidTransition, record.fail, "second reason", 1100.0)
        self.assertEqual(record.to_dict(), before)


class ElapsedTests(SynchronousTestCase):
    def test_running_counts_to_now(self) -> None:
        """While running, the elapsed time runs up to the given time."""
        self.assertEqual(make_record().elapsed(1042.5), 42.5)

    def test_ended_counts_to_the_end(self) -> None:
        """After the end, the elapsed time stops at the end time."""
        record = make_record()
        record.fail("x", 1010.0)
        self.assertEqual(record.elapsed(5000.0), 10.0)

    def test_never_negative(self) -> None:
        """A clock that went back gives 0, not a negative time."""
        self.assertEqual(make_record().elapsed(900.0), 0.0)


class SerialisationTests(SynchronousTestCase):
    def full_record(self) -> RunRecord:
        record = make_record()
        record.extra_parameters = {"auth": "https://host/auth?wsdl"}
        record.started(4242)
        record.record_progress(37, "half way")
        record.request_abort()
        record.abort(1012.5, exit_code=None, exit_signal=9, output_tail=["a", "b"])
        return record

    def test_round_trip_through_json(self) -> None:
        """A record written by to_dict and read back through JSON is the same."""
        record = self.full_record()
        data = json.loads(json.dumps(record.to_dict()))
        self.assertEqual(data["format"], RECORD_FORMAT)
        back = RunRecord.from_dict(data)
        self.assertEqual(back.to_dict(), record.to_dict())
        self.assertIs(back.state, RunState.ABORTED)
        self.assertEqual(back.output_tail, ["a", "b"])

    def test_round_trip_of_completed_and_failed(self) -> None:
        """Completed and failed records keep their outputs, reason and exit code."""
        completed = make_record()
        completed.complete({"result": "eA=="}, 1001.0)
        failed = make_record()
        failed.fail("the program failed", 1002.0, exit_code=2, output_tail=["err"])
        for record in (completed, failed):
            back = RunRecord.from_dict(json.loads(json.dumps(record.to_dict())))
            self.assertEqual(back.to_dict(), record.to_dict())

    def test_not_a_dict(self) -> None:
        """Anything but a JSON object is corrupt."""
        for data in (None, [], "run", 1):
            self.assertRaises(CorruptRecord, RunRecord.from_dict, data)

    def test_wrong_or_missing_format(self) -> None:
        """A record without the known format number is corrupt."""
        for fmt in (None, 0, 2, "1"):
            data = make_record().to_dict()
            data["format"] = fmt
            self.assertRaises(CorruptRecord, RunRecord.from_dict, data)
        data = make_record().to_dict()
        del data["format"]
        self.assertRaises(CorruptRecord, RunRecord.from_dict, data)

    def test_missing_keys(self) -> None:
        """A record missing any required key is corrupt."""
        required = (
            "service_id",
            "program",
            "inputs",
            "extra_parameters",
            "created_at",
            "state",
            "percent",
            "message",
            "output_tail",
        )
        for key in required:
            data = make_record().to_dict()
            del data[key]
            self.assertRaises(CorruptRecord, RunRecord.from_dict, data)

    def test_wrong_types(self) -> None:
        """A value of the wrong type, including a bool where an int belongs, is corrupt."""
        bad_values = [
            ("percent", "42"),
            ("percent", True),
            ("percent", 4.5),
            ("created_at", "yesterday"),
            ("created_at", False),
            ("service_id", 7),
            ("inputs", ["secondsToWait"]),
            ("output_tail", "one line"),
            ("pid", "123"),
            ("pid", True),
            ("ended_at", "later"),
            ("exit_code", 1.0),
            ("outputs", "eA=="),
        ]
        for key, value in bad_values:
            data = make_record().to_dict()
            data[key] = value
            self.assertRaises(CorruptRecord, RunRecord.from_dict, data)

    def test_unknown_state(self) -> None:
        """A state that the state machine does not know is corrupt."""
        for state in ("paused", "RUNNING", None):
            data = make_record().to_dict()
            data["state"] = state
            self.assertRaises(CorruptRecord, RunRecord.from_dict, data)
