"""Splits: a data config -> its checked table and a leak-free split (build), and the
grouped, stratified splits with the leak check that guards them (grouped)."""
