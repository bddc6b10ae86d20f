"""Data, in sub-packages by step, in the order data flows through them:

    sources/   dataset readers by name (and download, synthetic): each produces a table
    table.py   the standard table (DatasetTable) every source produces, and its checks
    split/     config -> checked table + leak-free split (build); grouped stratified splits
               and the leak check (grouped)
    records/   table + split -> prepared TFDS ArrayRecord splits (prepare), shared by inputs
               hash (store)
    pipeline/  Grain loaders (loaders), the fitted metadata encoder (metadata), oversampling
               (resample), and inputs.py, which ties every step together for a config
    images/    picture files and operations on pictures (dicom: the one opener of any image
               file; geometry, augment, shift, lesion_crop), used by table, records
               and pipeline
    explore.py plots and a summary of a table
    sample/    the bundled HAM10000 sample

A part imports only parts before it (table and images first, then sources, split, records,
pipeline and explore; tests/test_architecture.py DATA_LAYERS).
"""
