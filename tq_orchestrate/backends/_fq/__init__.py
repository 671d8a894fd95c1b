"""python-task-queue's FileQueue format (``fq://``): names, file operations, dead letters."""
