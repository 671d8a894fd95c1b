"""Take the README's screenshots of the example in `dagster dev` (by hand; CI does not run this).

Needs a checkout with the dev extra, Chromium (``apt-get install chromium``) and
``pip install playwright``. Starts `dagster dev` on 127.0.0.1 with a temporary
DAGSTER_HOME, runs two series of the example with local workers, and writes
PNGs to ``docs/`` (or ``--out``)::

    python docs/make_screenshots.py [--chromium /usr/bin/chromium] [--out docs]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.orchestration.dagster_dev import (  # noqa: E402
    LAUNCH,
    DagsterDev,
    dagster_dev,
    materializations,
    materialize_volume,
    start_sensor,
)
from tq_orchestrate.orchestration.demo import worker_processes  # noqa: E402
from tq_orchestrate.orchestration.example import pipeline  # noqa: E402

BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def wait_for(dev: DagsterDev, asset: str, count: int, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while len(materializations(dev, asset)) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"{asset}: fewer than {count} materializations after {seconds:g}s")
        time.sleep(0.5)


def start_series(dev: DagsterDev) -> None:
    """What the UI's Materialize on block 0000 of cumsum_upload does."""
    params = {
        "selector": dev.selector(jobName="__ASSET_JOB", assetSelection=[{"path": ["cumsum_upload"]}]),
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "0000"}]},
        "mode": "default",
    }
    answer = dev.gql(LAUNCH, params=params)["launchRun"]
    assert answer["__typename"] == "LaunchRunSuccess", answer


def shoot(
    page: Any, url: str, path: Path, wait_text: str, click: str | None = None, top: str | None = None
) -> None:
    """Open ``url``, wait for ``wait_text``, click ``click``, scroll ``top`` into view, save a PNG."""
    page.goto(url)
    skip = page.get_by_role("button", name="Skip")  # the first-visit community dialog
    with contextlib.suppress(Exception):
        skip.click(timeout=3000)
    page.get_by_text(wait_text).first.wait_for(timeout=30_000)
    if click is not None:
        page.get_by_text(click, exact=True).first.click()
    time.sleep(2.5)
    if top is not None:
        page.get_by_text(top, exact=True).first.evaluate("e => e.scrollIntoView()")
        time.sleep(0.5)  # let charts and the graph layout settle
    page.screenshot(path=str(path))
    print(f"{path}: {path.stat().st_size // 1024} KB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    blocks = 4
    keys = f"{pipeline.NAME}_blocks"
    with (
        tempfile.TemporaryDirectory(prefix="tqo-shots-") as tmp,
        dagster_dev(Path(tmp), blocks=blocks) as dev,
    ):
        materialize_volume(dev, {"block_depth": 8, "height": 256, "width": 256, "tile": 32})
        start_sensor(dev, f"{pipeline.NAME}_chain")
        url = f"sqlite://{dev.example / 'queue.db'}"
        with worker_processes(2, url, pipeline.TASKS_MODULE, log_dir=Path(tmp)), sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=BROWSER_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 820})
            wait_for(dev, keys, 2)  # the first series is half way
            shoot(
                page,
                f"{dev.url}/assets/{keys}?view=partitions",
                args.out / "dagster-partitions.png",
                "0003",
                "0001",
            )
            wait_for(dev, pipeline.VERIFIED, 1)
            graph = f"{dev.url}/asset-groups/{pipeline.GROUP}"
            shoot(page, graph, args.out / "dagster-asset-graph.png", pipeline.VERIFIED)
            start_series(dev)  # a second series, for more points on the plots
            wait_for(dev, keys, 2 * blocks)
            page.set_viewport_size({"width": 1400, "height": 1000})
            overview = f"{dev.url}/assets/{keys}?view=overview"
            shoot(page, overview, args.out / "dagster-drain-plots.png", "drain seconds", "Plots", "Metadata")
            browser.close()


if __name__ == "__main__":
    main()
