"""Reports: the accuracy report of one training run (``report.json``/``.md``/``accuracy.png``)."""
