"""The verdict's calibration: false alarms and misses against known barriers (docs/validation.md).

The fast part (each scenario once, one planted run on a real structure-function matrix)
runs in CI; the whole suite (five seeds, about 50 audits) is ``
