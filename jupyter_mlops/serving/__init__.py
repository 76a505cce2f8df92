"""After a run: serving its model, monitoring new data against it, and retraining."""
