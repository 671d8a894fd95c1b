"""Example deployment: a volume's running sum along z, computed block after block.

``dagster dev -w workspace.yaml`` loads ``defs``. Run ``make_volume`` once, then
turn on the ``cumsum_blocks_chain`` sensor (or let the schedule start a series),
and ``verify_output`` to compare with numpy. ``tqo demo`` does all of it locally.
"""

from .pipeline import build_definitions, definitions_from_env

defs = definitions_from_env()

__all__ = ["build_definitions", "defs", "definitions_from_env"]
