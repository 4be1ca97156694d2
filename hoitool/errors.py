"""User-facing errors: bad input that the user can fix, reported in one line with exit code 2."""


class HoiError(Exception):
    """Something the user can fix (bad file, wrong units, missing asset).

    The message is one line saying what is wrong and what to do; the CLI prints it and
    exits with code 2.
    """


class InputError(HoiError):
    """An input file or value is unusable."""


class MissingDependencyError(HoiError):
    """An optional dependency is needed for this feature."""

    def __init__(self, package: str, extra: str, feature: str):
        super().__init__(
            f"{feature} needs the '{package}' package: pip install 'hoitool[{extra}]'"
        )
        self.package = package
        self.extra = extra


def require(module: str, extra: str, feature: str):
    """Import an optional module, or raise MissingDependencyError with an install hint."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(module, extra, feature) from e
