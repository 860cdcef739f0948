"""The exceptions and warnings ecorecover raises: one class per kind of problem.

Every exception derives from :class:`EcorecoverError` and also from the built-in a caller would
already catch (``ValueError``, ``TypeError``, ``KeyError``, ...), so ``except ValueError`` keeps
working. The compiled core's errors arrive as these classes too: a shape mismatch as
:class:`ShapeError`, NaN or infinity as :class:`NonFiniteValueError`, a negative value as
:class:`NegativeValueError`, an argument out of its domain as :class:`ParameterError`, and a
cancelled kernel as :class:`CancelledError`. A Rust panic stays a ``RuntimeError`` (a bug to report).

The warnings live here too; their old import locations (``ecorecover.RecoveryWarning``,
``ecorecover.preprocessing.RawCountWarning``, ...) name the same classes.
"""

from __future__ import annotations

import concurrent.futures

__all__ = [
    "CancelledError",
    "EcorecoverError",
    "GeneMatchError",
    "InputDataError",
    "MissingLabelWarning",
    "ModelFileError",
    "NegativeValueError",
    "NonFiniteValueError",
    "NonIntegerCountsWarning",
    "ParameterError",
    "ParameterTypeError",
    "RawCountWarning",
    "RecoveryWarning",
    "ShapeError",
    "SkippedCellTypeWarning",
    "TrainingInputError",
]


class EcorecoverError(Exception):
    """Base class of every exception ecorecover raises on purpose."""


# ------------------------------------------------------------------------------------------------
# Arguments


class ParameterError(EcorecoverError, ValueError):
    """An argument has the right type but a value outside what the function accepts."""


class ParameterTypeError(EcorecoverError, TypeError):
    """An argument has a type the function does not accept."""


# ------------------------------------------------------------------------------------------------
# Data


class InputDataError(EcorecoverError, ValueError):
    """The data (matrix, labels, metadata) cannot be used as given."""


class NonFiniteValueError(InputDataError):
    """NaN or infinity where only finite numbers are allowed."""


class NegativeValueError(InputDataError):
    """A negative number where only non-negative ones are allowed (e.g. scaled data)."""


class ShapeError(InputDataError):
    """Dimensions that do not fit together."""


class TrainingInputError(InputDataError):
    """The training input is inconsistent (labels, names, metadata or values)."""


class GeneMatchError(EcorecoverError, KeyError, ValueError):
    """None of a model's genes were found in the data (identifier mismatch)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ModelFileError(EcorecoverError, ValueError):
    """A file is not a readable ecorecover model (not HDF5, truncated, foreign or too new)."""


# ------------------------------------------------------------------------------------------------
# Control


class CancelledError(EcorecoverError, concurrent.futures.CancelledError):
    """A kernel was stopped through its ``_core.CancelToken`` before it finished.

    A ``concurrent.futures.CancelledError`` (what the token raised before this class existed).
    Ctrl-C in the main thread stays a ``KeyboardInterrupt``: the signal handler's own exception.
    """


# ------------------------------------------------------------------------------------------------
# Warnings


class RecoveryWarning(UserWarning):
    """Something R's RecoverSE does silently: cells left unscored, model genes missing, ..."""


class RawCountWarning(UserWarning):
    """The raw-count guard fired: the input looked like raw counts and got ``log2(x + 1)``."""


class NonIntegerCountsWarning(UserWarning):
    """:func:`~ecorecover.preprocessing.log_normalize` got values that are not whole numbers: the
    data look normalised (e.g. log-normalised) already, and normalising them again distorts them."""


class SkippedCellTypeWarning(UserWarning):
    """Some cell types get no model (too few SEs with enough cells); the message says why."""


class MissingLabelWarning(UserWarning):
    """Cells with a missing SE label were labelled ``"nonSE"`` (as R does)."""
