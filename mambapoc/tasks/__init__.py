"""Task builders: turn a dataset and a tokenizer into scored prompts of exact token lengths."""
