"""The SQS backend's parts: protocol knowledge, transports, dead letters.

:mod:`.protocol` is pure (no I/O, no botocore); :mod:`.transports` puts the
boto3 engine and the fast engine behind one interface; :mod:`.retry` is the
fast engine's transport retry policy.
"""
