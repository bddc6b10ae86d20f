"""Evaluation of predictions: metrics with group-bootstrap intervals, plots, subgroups, reports."""
