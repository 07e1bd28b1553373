"""glass-diag: audit softness / energy-barrier analyses of glassy liquids.

The package reads the dataset contract (:mod:`diag.dataset`), trains the
softness SVM (:mod:`diag.svm`), infers Arrhenius barriers
(:mod:`diag.arrhenius`), evaluates the variance criterion
(:mod:`diag.criterion`) and assembles plain result objects
(:mod:`diag.audit`) that the renderers in :mod:`diag.report` print.
"""

__version__ = "0.1.0"
