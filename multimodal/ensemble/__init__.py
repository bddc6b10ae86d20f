"""Ensembles over predictions (stacking, weighted late fusion): see the stacking issue."""
