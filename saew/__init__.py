"""saew: the SAE Evolution Warehouse.

The data flows one way (tests/test_layout.py checks it):

    cli  ->  ingest | compute | report | sql  ->  storage  ->  sae  ->  errors, progress

``cli`` wires commands to steps; ``ingest`` turns outside files into lake tables;
``compute`` derives tables from the lake; ``report`` draws what the dbt marts hold; ``sql``
runs dbt and ad-hoc SQL on the catalog; ``storage`` is the lake, its schemas and catalog;
``sae`` is how an SAE is represented (parameters, folding, encoding, the SAELens folder).
"""
