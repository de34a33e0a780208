"""Selection benchmark: strategies at 100k and 1M frames against naive references."""
