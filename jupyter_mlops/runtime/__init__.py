"""What runs inside a step's kernel: artifacts saved and loaded, data and metric checks,
profiles and captures. Imports only the standard library and, lazily, the library of the value
at hand; nothing from the rest of jupyter-mlops but :mod:`jupyter_mlops.errors`."""
