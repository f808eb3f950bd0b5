"""gpo-study: Group Preference Optimization and its hyperparameter and scaling studies."""

__version__ = "0.1.0"
