"""One training loop for every model (hoitool.train.loop) and the models' tasks."""
