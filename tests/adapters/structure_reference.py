"""The brute-force reference of the structure functions now lives in the package
(:mod:`adapters.structure_reference`, it is the definition); re-exported here for the tests."""

from adapters.structure_reference import (  # noqa: F401
    box_matrix,
    hand_gaussian,
    minimum_image,
    perpendicular_widths,
    reference_features,
    reference_for_config,
)
