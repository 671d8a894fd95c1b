"""The example deployment, shipped in the package: a volume's running sum along z, block by block.

``dagster dev -m tq_orchestrate.orchestration.example`` (or ``-w workspace.yaml``
in a checkout) loads ``defs``; ``tqo demo`` runs the same definitions.
Importing this module builds ``defs`` from the environment
(:func:`~.pipeline.definitions_from_env`).
"""

import warnings

from dagster import BetaWarning

# Dagster 1.13 copies every sensor with `owners=[]` when it loads definitions for a code
# server or a run, and that copy warns that `owners` is a beta parameter (we never pass it).
# Silence exactly that warning so `dagster dev` and every run process start quietly.
warnings.filterwarnings("ignore", message=r"Parameter `owners` of initializer", category=BetaWarning)

from .pipeline import build_definitions, definitions_from_env  # noqa: E402

defs = definitions_from_env()

__all__ = ["build_definitions", "definitions_from_env", "defs"]
