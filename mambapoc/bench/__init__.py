"""The compare engine: cells of model x length x task, measured in isolated worker processes."""
