"""What a model reads: Grain loaders over prepared records (loaders), the fitted metadata
encoder (metadata), oversampled training sources (resample), and the config -> split ->
records -> encoder -> loaders wiring that ties them together (inputs)."""
