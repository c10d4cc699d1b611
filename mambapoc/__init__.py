"""mambapoc: find out whether a Mamba model can replace a Transformer on your own long logs."""

import os

# libgomp's idle OpenMP workers spin for ~300k iterations (milliseconds) after every torch op, on the very
# cores our numba scan is about to use; 10k keeps torch's own speed and stops that theft. It must be set
# before torch is first imported, so it lives here; it applies to every model alike, and a value the user
# set wins. env.json records it.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

__version__ = "0.1.0"
