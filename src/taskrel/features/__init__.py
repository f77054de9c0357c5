"""Features: packaged datasets, encoders, cached extraction and fine-tuning."""
