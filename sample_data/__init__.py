"""The bundled sample data and tiny models, installed as `mambapoc.sample_data` (see mambapoc.resources)."""
