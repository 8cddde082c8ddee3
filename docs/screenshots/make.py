"""
Screenshots of the status pages, one per state, for the documentation.

Run it from anywhere with the project's virtual environment::

    .venv/bin/python docs/screenshots/make.py

It renders realistic records with ``waiter_service.status_page`` (the
checkout's, not the installed package), shows each page in headless
Chromium about 480 px wide, as the portal's frame would, and writes
``docs/screenshots/<state>.png``.  ``tests/test_browser.py`` reuses the
browser setup and the sample pages, so the pictures show what is tested.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from waiter_service.runs.record import RunRecord  # noqa: E402
from waiter_service.runs.state import RunState  # noqa: E402
from waiter_service.status_page import (  # noqa: E402
    ClusterQueue,
    encode_page,
    render_status_page,
)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: Chromium's flags for a headless run in a container or a CI job.
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
)
#: About the width of the portal's status frame.
WIDTH = 480
#: A fixed "now", so that the pictures do not change from one run to the next.
NOW = 1_780_000_000.0


def browser_missing() -> str | None:
    """Why no browser can be started here, or None if one can."""
    for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)):
        if shutil.which(path) is None:
            return (
                f"{name} not found at {path}: the status pages were NOT checked in a "
                "browser (install Debian's chromium and chromium-driver)"
            )
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install '.[test]'"
    return None


def start_browser() -> Any:
    """A headless Chromium under chromedriver; the caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def set_viewport(driver: Any, width: int, height: int = 800) -> None:
    """Emulate a viewport of exactly ``width`` CSS pixels, one device pixel each."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )


def show(driver: Any, html: str, width: int, height: int = 800) -> None:
    """Load ``html`` as the portal gets it (base64 in a ``data:`` URL) at ``width``."""
    set_viewport(driver, width, height)
    driver.get("data:text/html;base64," + encode_page(html))


def screenshot(driver: Any, html: str, width: int = WIDTH) -> bytes:
    """A PNG of the whole page at ``width``, as tall as its content."""
    show(driver, html, width)
    height = driver.execute_script(
        "return Math.ceil(document.querySelector('main').getBoundingClientRect().bottom) + 12"
    )
    set_viewport(driver, width, int(height))
    png: bytes = driver.get_screenshot_as_png()
    return png


def sample_records(now: float = NOW) -> dict[str, tuple[RunRecord, dict[str, Any]]]:
    """
    One realistic run per page, with the keyword arguments of its rendering.

    The keys name the pages: ``queued``, ``cluster`` (queued on a cluster),
    ``running``, ``stopping``, ``failed``, ``aborted`` and ``completed``.
    """

    def record(number: int, age: float) -> RunRecord:
        return RunRecord(
            service_id=f"bff13094b0988e404713177921198f5f_{number}",
            program="Waiter",
            inputs={"secondsToWait": 600},
            created_at=now - age,
        )

    queued = record(0, 95)

    cluster = record(1, 400)
    cluster.launching(now - 380)

    running = record(2, 260)
    running.launching(now - 250)
    running.record_progress(42, "meshing part 3 of 7")

    stopping = record(3, 200)
    stopping.launching(now - 190)
    stopping.record_progress(63, "solving time step 126 of 200")
    stopping.request_abort()

    failed = record(4, 4000)
    failed.launching(now - 3990)
    failed.record_progress(71, "solving time step 142 of 200")
    failed.fail(
        "the program failed",
        now - 10,
        exit_code=1,
        output_tail=[
            "Traceback (most recent call last):",
            '  File "solver.py", line 88, in <module>',
            "    step(mesh, dt)",
            '  File "solver.py", line 41, in step',
            "    raise ValueError(f'diverged at t={t:.3f}: residual {r:.2e} > 1e+06')",
            "ValueError: diverged at t=1.420: residual 3.71e+07 > 1e+06",
        ],
    )

    aborted = record(5, 700)
    aborted.launching(now - 690)
    aborted.record_progress(18)
    aborted.request_abort()
    aborted.abort(now - 300, exit_signal=15, output_tail=["caught SIGTERM, saving checkpoint"])

    completed = record(6, 640)
    completed.launching(now - 630)
    completed.complete({"result": "V2FpdGVkIDYwMCBvZiA2MDAgc2Vjb25kcy4="}, now - 30)

    assert running.state is RunState.RUNNING
    return {
        "queued": (queued, {"queue_position": 3}),
        "cluster": (cluster, {"cluster": ClusterQueue("4815162", "PENDING", "Resources")}),
        "running": (running, {}),
        "stopping": (stopping, {}),
        "failed": (failed, {}),
        "aborted": (aborted, {}),
        "completed": (completed, {}),
    }


def sample_pages(now: float = NOW) -> dict[str, str]:
    """The HTML of each sample page, by name."""
    return {
        name: render_status_page(record, now, **kwargs)
        for name, (record, kwargs) in sample_records(now).items()
    }


def write_screenshots(driver: Any, out_dir: Path = HERE) -> list[Path]:
    """Write ``<name>.png`` for every sample page into ``out_dir``."""
    written = []
    for name, html in sample_pages().items():
        path = out_dir / f"{name}.png"
        path.write_bytes(screenshot(driver, html))
        written.append(path)
    return written


def main() -> list[Path]:
    """Start a browser, write the screenshots here, quit the browser."""
    missing = browser_missing()
    if missing is not None:
        raise SystemExit(missing)
    driver = start_browser()
    try:
        return write_screenshots(driver)
    finally:
        driver.quit()


if __name__ == "__main__":
    for path in main():
        print(f"{path.name}: {path.stat().st_size} bytes")
