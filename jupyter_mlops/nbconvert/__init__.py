"""The nbconvert face: ``jupyter nbconvert --to mlops NOTEBOOK``."""
