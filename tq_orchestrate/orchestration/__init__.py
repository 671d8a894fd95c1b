"""Dagster integration: block assets, their chain sensor, the queue resource, the example.

Install the extra first: ``pip install tq-orchestrate[dagster]``. ``import
tq_orchestrate`` never imports this package; importing this package alone does not
import Dagster either. :mod:`.drain` is plain Python; :mod:`.resources`,
:mod:`.assets` (block assets and checks), :mod:`.chain` (the sensor that runs
blocks in order), :mod:`.example` (the shipped example deployment) and the
deprecated op job (:mod:`.ops`, :mod:`.jobs`, :mod:`.sensors`) need Dagster.
"""
