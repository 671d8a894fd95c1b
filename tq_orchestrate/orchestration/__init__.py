"""Dagster integration: resource, ops, block pipeline job, drain and block-chain sensors.

Install the extra first: ``pip install tq-orchestrate[dagster]``. ``import
tq_orchestrate`` never imports this package; importing this package alone does not
import Dagster either. :mod:`.drain` is plain Python; :mod:`.resources`,
:mod:`.ops`, :mod:`.jobs` and :mod:`.sensors` need Dagster.
"""
