"""Read models (CQRS projections) of ecomcore, imported as ``ecomcore_projections``.

Projections depend on :mod:`ecomcore`; the domain never imports them.
"""
