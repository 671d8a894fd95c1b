"""The SQS backend's parts, one job each (:mod:`tq_orchestrate.backends.sqs` is the face).

* :mod:`.protocol`: pure SQS knowledge (entries, the reply parser, the error
  mapping, clamps, MD5); no I/O, no botocore;
* :mod:`.transports`: the engines behind one interface, and the choice between them;
* :mod:`.retry`: the fast engine's transport retry policy (tenacity);
* :mod:`.connection`: one process's clients, queue URL and transport;
* :mod:`.options`: the checked ``from_url`` options;
* :mod:`.dead_letters`: queue pairs, the received-message memo, dead-letter records.
"""
