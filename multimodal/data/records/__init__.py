"""Prepared records: a table + split written as TFDS ArrayRecord files (prepare), and the
shared store of prepared folders keyed by their inputs hash (store)."""
