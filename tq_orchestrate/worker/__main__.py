"""``python -m tq_orchestrate.worker URL [options]``: the same command as ``tqo work``.

Only this entry point imports the command line (and click); the loop never does.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``tqo work`` under the name ``python -m tq_orchestrate.worker``."""
    from ..cli import work

    work.main(args=list(argv) if argv is not None else None, prog_name="python -m tq_orchestrate.worker")


if __name__ == "__main__":
    main()
