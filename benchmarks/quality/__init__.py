"""Quality: balanced accuracy and its intervals on grouped splits: recipes and their ledger,
cross-validation, metadata gain, modalities, ensembles, decision rules, robustness to shifted
test sets, the report baselines rebuilt, lesion segmentation."""
