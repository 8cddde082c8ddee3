"""The README, .ci/run and the Dockerfile tell the truth about the code."""

from __future__ import annotations

import json
import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from waiter_service.tap import Options

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def fenced_commands(text: str) -> list[str]:
    """The one-line shell commands in ``sh`` code blocks."""
    return [
        block.strip()
        for block in re.findall(r"```sh\n(.*?)```", text, re.S)
        if "\n" not in block.strip()
    ]


class DocsTests(SynchronousTestCase):
    def test_ci_runs_readme_test_command(self) -> None:
        """.ci/run runs the README's test command, to the letter."""
        test_command = next(c for c in fenced_commands(README) if "trial" in c)
        ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
        self.assertTrue(any(line.startswith(test_command + " ") for line in ci_lines))

    def test_readme_start_command(self) -> None:
        """The README's start command installs the package and runs twistd -n waiter."""
        start = fenced_commands(README)[0]
        self.assertIn("pip install .", start)
        self.assertTrue(start.endswith("twistd -n waiter"))

    def test_every_option_documented(self) -> None:
        """Every option of twistd waiter has a row in the README's table, and no more."""
        documented = set(re.findall(r"^\| `--([a-z-]+)", README, re.M))
        options = {name for name, *_ in Options.optParameters}
        options |= {name for name, *_ in Options.optFlags}
        options |= {
            name[4:].replace("_", "-")
            for name in dir(Options)
            if name.startswith("opt_") and name not in ("opt_help", "opt_version")
        }
        self.assertEqual(documented, options)

    def test_dockerfile_runs_what_the_tests_run(self) -> None:
        """The image's CMD is the twistd command line the end-to-end tests use."""
        dockerfile = (REPO / "Dockerfile").read_text()
        cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1))
        self.assertEqual(cmd[:4], ["twistd", "-n", "--pidfile=", "waiter"])
        self.assertIn('ENTRYPOINT ["/usr/bin/tini", "--"]', dockerfile)
        self.assertRegex(dockerfile, r"(?m)^USER waiter$")
