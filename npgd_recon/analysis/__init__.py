"""The paper's analyses and side-by-side evaluation: contraction, de-biasing and super-resolution
experiments, metrics over methods, comparison runs, figures."""
