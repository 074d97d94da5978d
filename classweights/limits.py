"""Bounds on what a user may ask for, held by the library and the command line alike: each is
far above any real dataset's need, and below what would exhaust memory or time before saying
why (a mistyped digit, a forgotten unit)."""

#: Classes a scan counts: its count arrays have one entry a class (16-bit masks hold at most
#: 65,536 values).
MAX_CLASSES = 1 << 20

#: Bootstrap resamples of a sampled scan: each is a pass over the sampled masks' counts.
MAX_RESAMPLES = 100_000

#: Raw values and class ids: numpy counts them as 64-bit integers.
VALUES = range(-(2**63), 2**63)

#: Values ``check --allowed-values`` may list, ranges spelled out.
MAX_ALLOWED_VALUES = 1 << 20
