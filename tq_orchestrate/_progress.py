"""Progress bars, with tqdm imported only when one is shown."""

from __future__ import annotations

from typing import Any, Protocol


class Bar(Protocol):
    """What the package uses of a progress bar."""

    def update(self, n: float | None = 1) -> object: ...

    def __enter__(self) -> Bar: ...

    def __exit__(self, *exc: object) -> object: ...


class _Hidden:
    """A bar that is not shown: counts nothing and imports nothing."""

    def update(self, n: float | None = 1) -> None:
        """Nothing to show."""

    def __enter__(self) -> _Hidden:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def progress_bar(*, total: int | None, desc: str, unit: str, show: bool) -> Bar:
    """A tqdm bar when ``show``, else a silent stand-in (tqdm is not imported)."""
    if not show:
        return _Hidden()
    from tqdm import tqdm

    bar: Any = tqdm(total=total, desc=desc, unit=unit)
    return bar  # type: ignore[no-any-return]
