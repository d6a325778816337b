"""Data: training and evaluation images (sources, the package fetch step and its catalogue,
photos, super-resolution images) and the datasets that turn them into undersampled problems
with typed samples. Models never read files; datasets never train (fastMRI's ``data/``)."""
