"""The errors a user can act on. The CLI prints them without a traceback; everything else is a bug."""

from __future__ import annotations


class EdgedError(Exception):
    """Base of every error that carries a message meant for the user."""


class ConfigError(EdgedError):
    """A YAML document (config, manifest, scenario) that does not validate."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class ModelError(EdgedError):
    """A model file that cannot be loaded or does not match its manifest entry."""


class SourceError(EdgedError):
    """A frame source (image, video, folder, camera) that cannot be opened or read."""


class DatasetError(EdgedError):
    """An evaluation dataset that is missing or malformed."""


class MissingExtraError(EdgedError):
    """An optional dependency that the requested feature needs is not installed."""

    def __init__(self, module: str, extra: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the '{module}' package, which is not installed: pip install 'edged[{extra}]'"
        )
