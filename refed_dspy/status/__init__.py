"""`refed status`: where a run dir (run.py, text.py) or an experiment dir (experiment.py) stands, read from its files
without taking its lock."""
