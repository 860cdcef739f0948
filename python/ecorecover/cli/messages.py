"""How the command line words its errors: :class:`CLIError`, one-line messages, and the library's
``name=`` hints respelled as this command line's options (:func:`cli_spelling`)."""

from __future__ import annotations

import re

__all__ = ["CLIError", "API_TO_FLAG", "API_FUNCTION_TO_FLAG", "cli_spelling", "one_line", "input_error"]


class CLIError(Exception):
    """Bad usage or input: reported as one line, exit code 2."""


def one_line(text: object) -> str:
    """``text`` with its whitespace runs (newlines included) made single spaces."""
    return " ".join(str(text).split())


#: The Python API's parameter names and the options that set them on the command line. Messages
#: raised by the library name the parameters (``pass gene_symbols=``); the CLI prints the options.
API_TO_FLAG = {
    "gene_symbols": "--gene-symbols",
    "layer": "--layer",
    "use_raw": "--use-raw",
    "key_added": "--key-added",
    "overwrite": "--force",
    "celltype_key": "--celltype-key",
    "se_key": "--se-key",
    "sample_key": "--sample-key",
    "n_features": "--n-features",
    "n_features_per_se": "--n-features-per-se",
    "min_score": "--min-score",
    "n_runs": "--runs",
}
_API_PARAM = re.compile(r"(?<![\w.\-])(" + "|".join(sorted(API_TO_FLAG, key=len, reverse=True)) + r")=(True\b|False\b|None\b)?")


#: API functions whose command-line counterpart is an option.
API_FUNCTION_TO_FLAG = {"ecorecover.preprocessing.log_normalize": "--normalize"}


def cli_spelling(text: str) -> str:
    """``text`` with the API's ``name=`` hints spelled as this command line's options.

    ``pass gene_symbols=`` becomes ``pass --gene-symbols``, ``layer='counts'`` becomes
    ``--layer 'counts'``, ``overwrite=True`` becomes ``--force``, ``layer=None`` becomes
    ``no --layer``, ``ecorecover.preprocessing.log_normalize`` becomes ``--normalize``; other
    text is unchanged.
    """
    def flag(m: re.Match[str]) -> str:
        opt = API_TO_FLAG[m.group(1)]
        if m.group(2) == "True":  # a switch
            return opt
        if m.group(2) is not None:  # False / None: the option left out
            return f"no {opt}"
        rest = m.string[m.end():m.end() + 1]
        return opt + (" " if rest and not rest.isspace() and rest not in ",;:)" else "")

    for func, opt in API_FUNCTION_TO_FLAG.items():
        text = text.replace(func, opt)
    return _API_PARAM.sub(flag, text)


def input_error(files: str, exc: BaseException) -> CLIError:
    """A library error about the input ``files`` as a :class:`CLIError` naming them."""
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    return CLIError(f"{files}: {one_line(msg)}")
