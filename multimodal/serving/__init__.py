"""Serving: predictions from a run, an ensemble or an exported model, for the command line
(scripts/predict.py), an exported artifact (export.py) and the web demo (app.py)."""
