"""The bundled recipes, installed as `mambapoc.recipes` (see mambapoc.resources)."""
