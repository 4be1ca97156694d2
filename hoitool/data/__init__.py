"""Data: HOI records and manifests, the category vocabulary, the procedural synthetic corpus,
prepared shards and torch Datasets."""
