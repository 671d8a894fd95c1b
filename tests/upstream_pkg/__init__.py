"""Task modules registered with python-task-queue, for the bridge's tests.

``tasks`` (and its submodule ``tasks.image``) is what a worker imports with
``--import tests.upstream_pkg.tasks``; ``tasksx`` is a look-alike prefix and
``other`` a module imported some other way. Every task appends to ``RAN`` and,
when ``TQO_CANARY`` is set, writes the canary file, so a test sees what ran.
"""
