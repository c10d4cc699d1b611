"""Reports: charts, HTML, PDF and a plain summary from a run directory."""
