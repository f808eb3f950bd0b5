"""User-facing errors: one line that names the file, row and field, then a non-zero exit."""


class GPOError(Exception):
    """An error the user can act on; the CLI prints it as one line and exits with status 2."""


class DataError(GPOError):
    """Survey data that cannot be read: a missing file, wrong columns, or rows rejected by policy."""


class ConfigError(GPOError):
    """A configuration file or override that does not match the config dataclasses."""


def require(ok: bool, key: str, expected: str, value) -> None:
    """One config check: `key: expected <expected>, got <value>` unless `ok`."""
    if not ok:
        raise ConfigError(f"{key}: expected {expected}, got {value!r}")
