"""Errors a user can fix. The CLI prints their message without a traceback."""


class UserError(Exception):
    """A problem with the user's input (config, data, paths) that they can act on."""


class ConfigError(UserError):
    """An override or config combination that cannot run."""


class DataError(UserError):
    """A dataset that is missing, corrupt or in the wrong layout."""


def choice_error(key: str, value: object, allowed: list[str] | tuple[str, ...]) -> ConfigError:
    """The standard message for a value outside a fixed set of choices."""
    options = ", ".join(str(a) for a in allowed)
    return ConfigError(f"{key}={value!r} is not supported. Allowed values: {options}.")
