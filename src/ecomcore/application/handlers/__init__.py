"""The Shop's command handlers, one module per area.

Each handler loads the aggregates it needs through a ``UnitOfWork``, calls the domain,
and adds what it creates; ``unit_of_work.transact`` saves it all in one transaction and
runs the handler again when it lost a race. The catalogue's handlers write to the
catalogue (no events) and take it directly.
"""
