"""Ground-truth toy model (METHOD section 3): Gaussian coordinates, linear barriers, logistic labels.

Each sample has ``n = n_energy + n_noise`` independent coordinates ``x_k ~ N(0, 1)``;
the true barrier is ``E = sum_k a_k x_k + E0`` with ``a_k = 0`` for the noise
coordinates, and the label is drawn from ``P(R=1 | E, T) = 1 / (1 + exp(E / T))``.
Optional correlated extras (odd nonlinear functions of the energy coordinates that
carry no energy of their own) are appended as further input features.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.special import expit

from diag.errors import UsageError

EXTRAS = ("none", "cube", "triple")

#: default temperatures of the Arrhenius fits and the default training temperature
DEFAULT_TEMPERATURES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
DEFAULT_TRAIN_TEMPERATURE = 1.0


@dataclass(frozen=True)
class ToySample:
    """Samples drawn at one temperature.

    Attributes
    ----------
    X : ndarray, shape (n, n_features)
        Input features: coordinates, then extras.
    energy : ndarray, shape (n,)
        True barrier of each sample.
    label : ndarray, shape (n,), int8
        1 if the sample rearranges.
    """

    X: np.ndarray
    energy: np.ndarray
    label: np.ndarray


@dataclass
class ToyModel:
    """The toy model of METHOD section 3.

    Parameters
    ----------
    n_energy : int
        Coordinates that carry energy (``a_k != 0``), named ``x1 .. x{n_energy}``.
    n_noise : int
        Pure-noise coordinates (``a_k = 0``), named after the energy coordinates.
    coef : float or sequence of float
        ``a_k`` of the energy coordinates: one value for all or one per coordinate.
    extra : {"none", "cube", "triple"}
        Correlated extras of the energy coordinates: ``x_k^3``, or the cyclic
        products of three distinct coordinates ``x_k x_{k+1} x_{k+2}``.
    offset : float
        ``E0``; with a large offset every barrier is positive.
    """

    n_energy: int = 10
    n_noise: int = 4
    coef: float | Sequence[float] = 1.0
    extra: str = "none"
    offset: float = 0.0
    _a: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.n_energy < 1:
            raise UsageError(f"n_energy must be >= 1, got {self.n_energy}")
        if self.n_noise < 0:
            raise UsageError(f"n_noise must be >= 0, got {self.n_noise}")
        if self.extra not in EXTRAS:
            raise UsageError(f"extra must be one of {', '.join(EXTRAS)}, got '{self.extra}'")
        if self.extra == "triple" and self.n_energy < 3:
            raise UsageError("extra 'triple' needs at least 3 energy coordinates")
        a = np.atleast_1d(np.asarray(self.coef, dtype=np.float64))
        if a.size == 1:
            a = np.full(self.n_energy, a[0])
        if a.shape != (self.n_energy,):
            raise UsageError(f"coef must be one value or {self.n_energy} values, got {a.size}")
        if not np.isfinite(a).all() or not np.isfinite(self.offset):
            raise UsageError("coef and offset must be finite")
        self._a = a

    # ------------------------------------------------------------ structure
    @property
    def coefficients(self) -> np.ndarray:
        """All ``a_k`` including the zero noise coefficients, shape (n_energy + n_noise,)."""
        return np.concatenate([self._a, np.zeros(self.n_noise)])

    @property
    def n_coordinates(self) -> int:
        return self.n_energy + self.n_noise

    def _triples(self) -> list[tuple[int, int, int]]:
        m = self.n_energy
        return [(k, (k + 1) % m, (k + 2) % m) for k in range(m)]

    @property
    def feature_names(self) -> list[str]:
        names = [f"x{k + 1}" for k in range(self.n_coordinates)]
        if self.extra == "cube":
            names += [f"x{k + 1}^3" for k in range(self.n_energy)]
        elif self.extra == "triple":
            names += [f"x{i + 1}*x{j + 1}*x{k + 1}" for i, j, k in self._triples()]
        return names

    @property
    def feature_families(self) -> list[str]:
        n_extra = len(self.feature_names) - self.n_coordinates
        fam = ["energy"] * self.n_energy + ["noise"] * self.n_noise
        return fam + [f"extra-{self.extra}"] * n_extra

    @property
    def energy_features(self) -> list[str]:
        """Names of the features that carry energy: the right answer for feature selection."""
        return [f"x{k + 1}" for k in range(self.n_energy) if self._a[k] != 0]

    def params(self) -> dict:
        return {
            "n_energy": self.n_energy,
            "n_noise": self.n_noise,
            "coef": self._a.tolist(),
            "extra": self.extra,
            "offset": float(self.offset),
        }

    # ------------------------------------------------------------- sampling
    def sample(self, n: int, temperature: float, rng: np.random.Generator) -> ToySample:
        """Draw ``n`` independent samples at one temperature.

        Parameters
        ----------
        n : int
        temperature : float
        rng : numpy.random.Generator

        Returns
        -------
        ToySample
        """
        if temperature <= 0:
            raise UsageError(f"temperature must be positive, got {temperature}")
        x = rng.standard_normal((n, self.n_coordinates))
        energy = x[:, : self.n_energy] @ self._a + self.offset
        # P(R=1) = 1/(1+exp(E/T)) = expit(-E/T): stable for any E/T
        label = (rng.random(n) < expit(-energy / temperature)).astype(np.int8)
        xe = x[:, : self.n_energy]
        if self.extra == "cube":
            x = np.hstack([x, xe**3])
        elif self.extra == "triple":
            t = np.array(self._triples())
            x = np.hstack([x, xe[:, t[:, 0]] * xe[:, t[:, 1]] * xe[:, t[:, 2]]])
        return ToySample(X=x, energy=energy, label=label)

    def bayes_accuracy(self, temperature: float, balanced: bool = True) -> float:
        """Best possible (balanced) accuracy of any classifier at one temperature.

        ``E`` is Gaussian with mean ``E0`` and variance ``sum a_k^2``. ``P(R=1|E)``
        decreases with ``E``, so the Bayes rule is a threshold ``E < E*`` where
        ``P(R=1|E*)`` equals the class prior (balanced accuracy) or 1/2 (plain
        accuracy). The integrals are done by adaptive quadrature on either side of
        the threshold, where the integrands are smooth.
        """
        from scipy import integrate, stats

        mu, sd = float(self.offset), float(np.sqrt(self._a @ self._a))
        pdf = stats.norm(mu, sd).pdf
        p1 = lambda e: expit(-e / temperature)  # noqa: E731
        lo, hi = mu - 12 * sd, mu + 12 * sd
        pi1 = integrate.quad(lambda e: pdf(e) * p1(e), lo, hi, points=[mu], limit=200)[0]
        prior = pi1 if balanced else 0.5
        # the threshold: P(R=1|E*) = prior  <=>  E* = T * log((1 - prior) / prior)
        e_star = float(temperature * np.log((1 - prior) / prior))
        e_star = min(max(e_star, lo), hi)
        tp = integrate.quad(lambda e: pdf(e) * p1(e), lo, e_star, limit=200)[0]
        tn = integrate.quad(lambda e: pdf(e) * (1 - p1(e)), e_star, hi, limit=200)[0]
        if not balanced:
            return float(tp + tn)
        return float(0.5 * (tp / pi1 + tn / (1 - pi1)))

    def to_dataset(
        self,
        temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
        per_temperature: int = 50_000,
        seed: int = 0,
        block_size: int = 500,
        train_temperature: float = DEFAULT_TRAIN_TEMPERATURE,
    ):
        """Draw samples at every temperature and return them as a :class:`diag.dataset.Dataset`.

        Each temperature gets its own child of ``numpy.random.SeedSequence(seed)``, so
        adding a temperature does not change the samples of the others. Consecutive
        blocks of ``block_size`` samples form groups (the toy analogue of frames).

        Returns
        -------
        diag.dataset.Dataset
        """
        from diag import __version__
        from diag.dataset import Dataset

        temps = sorted({float(t) for t in temperatures})
        if train_temperature not in temps:
            temps = sorted(temps + [float(train_temperature)])
        if per_temperature < 2:
            raise UsageError(f"per_temperature must be >= 2, got {per_temperature}")
        if block_size < 1:
            raise UsageError(f"block_size must be >= 1, got {block_size}")
        children = np.random.SeedSequence(seed).spawn(len(temps))
        Xs, Es, Rs, Ts, Gs = [], [], [], [], []
        n_blocks = -(-per_temperature // block_size)
        for it, (T, ss) in enumerate(zip(temps, children)):
            s = self.sample(per_temperature, T, np.random.default_rng(ss))
            Xs.append(s.X.astype(np.float32))
            Es.append(s.energy)
            Rs.append(s.label)
            Ts.append(np.full(per_temperature, T))
            Gs.append(it * n_blocks + np.arange(per_temperature) // block_size)
        return Dataset(
            features=np.vstack(Xs),
            label=np.concatenate(Rs),
            temperature=np.concatenate(Ts),
            group=np.concatenate(Gs),
            feature_names=self.feature_names,
            feature_families=self.feature_families,
            feature_params=[{"coef": float(c)} for c in self.coefficients]
            + [{} for _ in range(len(self.feature_names) - self.n_coordinates)],
            energy=np.concatenate(Es),
            conventions={
                "label_law": "P(R=1|E,T) = 1/(1+exp(E/T))",
                "energy_units": "toy units (k_B = 1)",
                "group": f"blocks of {block_size} consecutive samples at one temperature",
                "train_temperature": float(train_temperature),
                "temperatures": temps,
            },
            provenance={
                "generator": "glass-diag toymodel",
                "version": __version__,
                "seed": int(seed),
                "parameters": {**self.params(), "per_temperature": int(per_temperature), "block_size": block_size},
                "energy_features": self.energy_features,
            },
        )


def toy_from_params(params: dict) -> ToyModel:
    """Rebuild a :class:`ToyModel` from :meth:`ToyModel.params`."""
    return ToyModel(**{k: params[k] for k in ("n_energy", "n_noise", "coef", "extra", "offset")})


__all__ = ["ToyModel", "ToySample", "EXTRAS", "DEFAULT_TEMPERATURES", "DEFAULT_TRAIN_TEMPERATURE"]
