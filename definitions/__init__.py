"""What ``dagster dev -w workspace.yaml`` loads: the example shipped in the package.

See :mod:`tq_orchestrate.orchestration.example` (assets volume -> cumsum_upload ->
cumsum_blocks -> verified, the ``cumsum_chain`` sensor).
"""

from tq_orchestrate.orchestration.example import build_definitions, definitions_from_env, defs

__all__ = ["build_definitions", "defs", "definitions_from_env"]
