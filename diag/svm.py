"""Softness SVM: standardised linear SVM with the true hinge loss.

PLACEHOLDER implementation (sklearn LinearSVC, hinge loss); a fast primal
solver replaces the internals. The public interface is fixed.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class SoftnessSVM(ClassifierMixin, BaseEstimator):
    """Linear SVM on standardised features, true hinge loss, unregularised intercept.

    Minimises ``0.5 ||w||^2 + C * sum_i sample_weight_i * max(0, 1 - y_i (w . z_i + b))``
    with ``z = (x - mean_) / scale_`` and ``y = 2 R - 1``.

    Parameters
    ----------
    C : float
        Inverse regularisation strength (libsvm / sklearn convention: the loss is summed).
    tol : float
        Relative convergence tolerance.
    max_iter : int
    warm_start : bool
        Start from the previous ``coef_`` / ``intercept_`` when refitting.

    Attributes
    ----------
    mean_, scale_ : ndarray, shape (n_features,)
    coef_ : ndarray, shape (n_features,)   weights in standardised space
    intercept_ : float
    classes_ : ndarray, [0, 1]
    n_iter_ : int
    converged_ : bool
    objective_ : float
    """

    def __init__(self, C: float = 1.0, tol: float = 1e-6, max_iter: int = 200, warm_start: bool = False):
        self.C = C
        self.tol = tol
        self.max_iter = max_iter
        self.warm_start = warm_start

    def fit(self, X, y, sample_weight=None):
        from sklearn.svm import LinearSVC

        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y).astype(int)
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = X.shape[1]
        self.mean_ = X.mean(0)
        sd = X.std(0)
        self.scale_ = np.where(sd > 0, sd, 1.0)
        Z = (X - self.mean_) / self.scale_
        m = LinearSVC(loss="hinge", C=self.C, dual=True, max_iter=20000, intercept_scaling=10.0, tol=1e-6)
        m.fit(Z, y, sample_weight=sample_weight)
        self.coef_ = m.coef_.ravel().copy()
        self.intercept_ = float(m.intercept_[0])
        self.n_iter_ = int(m.n_iter_)
        self.converged_ = bool(m.n_iter_ < 20000)
        self.objective_ = self._objective(Z, 2 * y - 1, sample_weight)
        return self

    def _objective(self, Z, ys, sample_weight=None) -> float:
        m = 1.0 - ys * (Z @ self.coef_ + self.intercept_)
        loss = np.maximum(m, 0.0)
        if sample_weight is not None:
            loss = loss * sample_weight
        return float(0.5 * self.coef_ @ self.coef_ + self.C * loss.sum())

    def decision_function(self, X) -> np.ndarray:
        Z = (np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_
        return Z @ self.coef_ + self.intercept_

    def softness(self, X) -> np.ndarray:
        """Signed distance to the hyperplane in standardised units, > 0 on the rearranging side.

        Parameters
        ----------
        X : array, shape (n_samples, n_features)

        Returns
        -------
        ndarray, shape (n_samples,)
        """
        return self.decision_function(X) / np.linalg.norm(self.coef_)

    def predict(self, X) -> np.ndarray:
        return (self.decision_function(X) > 0).astype(int)
