"""Sweeps: Ray Tune with Optuna over GPO context sizes and architecture (see sweep.py)."""
