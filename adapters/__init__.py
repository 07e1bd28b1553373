"""Adapters: turn particle trajectories into the glass-diag dataset contract.

Nothing here knows an SVM; everything here writes :class:`diag.dataset.Dataset`.
"""
