"""The IPython face: the ``%%mlops`` magics, ``%mlops status`` and the ipywidgets panel."""
