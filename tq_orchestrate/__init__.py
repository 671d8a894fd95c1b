"""tq_orchestrate: fan out small independent tasks to a queue and keep workers fed."""
