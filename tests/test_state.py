"""Tests for :mod:`waiter_service.runs.state`."""

from twisted.trial.unittest import SynchronousTestCase

from waiter_service.runs.state import InvalidTransition, RunState, transition

TERMINAL = (RunState.COMPLETED, RunState.FAILED, RunState.ABORTED)


class TransitionTests(SynchronousTestCase):
    def test_running_may_end_in_any_terminal_state(self) -> None:
        """A running run may become completed, failed or aborted."""
        for new in TERMINAL:
            self.assertIs(transition(RunState.RUNNING, new), new)

    def test_queued_may_start_or_end(self) -> None:
        """A queued run may start, be aborted, or fail (e.g. interrupted)."""
        for new in (RunState.RUNNING, RunState.ABORTED, RunState.FAILED):
            self.assertIs(transition(RunState.QUEUED, new), new)

    def test_queued_cannot_complete(self) -> None:
        """A run that never started cannot be completed."""
        with self.assertRaises(InvalidTransition):
            transition(RunState.QUEUED, RunState.COMPLETED)

    def test_running_cannot_go_back_to_the_queue(self) -> None:
        """A started run never returns to the queue (it would run twice)."""
        with self.assertRaises(InvalidTransition):
            transition(RunState.RUNNING, RunState.QUEUED)

    def test_running_to_running_is_refused(self) -> None:
        """A running run cannot "move" to running again."""
        with self.assertRaises(InvalidTransition):
            transition(RunState.RUNNING, RunState.RUNNING)

    def test_terminal_states_refuse_every_change(self) -> None:
        """No state at all may follow a terminal state, not even itself."""
        for current in TERMINAL:
            for new in RunState:
                with self.assertRaises(InvalidTransition) as caught:
                    transition(current, new)
                self.assertIs(caught.exception.current, current)
                self.assertIs(caught.exception.new, new)

    def test_refusal_names_both_states(self) -> None:
        """The refusal's text says which change was refused."""
        error = InvalidTransition(RunState.FAILED, RunState.COMPLETED)
        self.assertEqual(str(error), "a run cannot go from failed to completed")


class IsTerminalTests(SynchronousTestCase):
    def test_only_queued_and_running_are_not_terminal(self) -> None:
        """Queued and running are the states that can still change."""
        self.assertFalse(RunState.QUEUED.is_terminal)
        self.assertFalse(RunState.RUNNING.is_terminal)
        for state in TERMINAL:
            self.assertTrue(state.is_terminal)

    def test_values_are_the_saved_names(self) -> None:
        """Each state's value is the lower-case name saved in run.json."""
        self.assertEqual(
            [state.value for state in RunState],
            ["queued", "running", "completed", "failed", "aborted"],
        )
