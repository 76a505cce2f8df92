"""The errors a user of jupyter-mlops can cause, rooted at one base class.

::

    MlopsError                 anything the user can fix; the CLI prints it in one line, exit 2
    ├── NotebookError          the file is not a readable nbformat 4 notebook
    ├── RoleError              an unknown cell role or bad ``%%mlops`` arguments
    ├── AnalysisError          problems found by the analysis (undefined names, cycles, ...)
    ├── SpecError              a missing or malformed ``pipeline.yaml``
    ├── ParameterError         a ``-p NAME=VALUE`` that the spec does not accept
    ├── OptionError            a setting of a run or an export that cannot be used
    ├── ArtifactError          a value that cannot be passed between steps, or a bad hash
    ├── ContractError          in a pipeline run: data or a metric broke what the notebook saw
    └── StepFailed             a step of a run failed (the CLI exits 1, not 2)
"""

from __future__ import annotations

from dataclasses import dataclass

# Every character Python's str.splitlines() breaks at: none may reach a one-line message.
_LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


def one_line(text: str) -> str:
    """``text`` with every line break written as its escape (``\\n``), so that a name a
    user chose (a file, a tag, a value) cannot split the one line an error is."""
    return text.translate(_LINE_BREAKS)


def shown(value: object, limit: int = 80) -> str:
    """A value a user gave, as a message quotes it: on one line, and shortened past
    ``limit`` characters (a 10,000-character value is not echoed back whole)."""
    text = one_line(value if isinstance(value, str) else repr(value))
    return text if len(text) <= limit else f"{text[:limit - 1]}…"


def printable(value: object, limit: int = 60) -> str:
    """A value a client sent (a path, a column name), as a message quotes it: every control
    character and lone surrogate escaped, not only line breaks, and shortened past
    ``limit`` (a megabyte key is not echoed back)."""
    text = value if isinstance(value, str) else repr(value)
    if not text.isprintable():
        text = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


class MlopsError(Exception):
    """Base of every error a user can cause; ``str(err)`` is the one line to show."""

    exit_code = 2

    def __init__(self, message: str, *, cell: int | None = None) -> None:
        message = one_line(message)
        super().__init__(message)
        self.message = message
        self.cell = cell

    def __str__(self) -> str:
        return self.message


class NotebookError(MlopsError):
    """The file cannot be read as an nbformat 4 notebook."""


class RoleError(MlopsError):
    """A cell's role or its arguments are not understood."""


@dataclass(frozen=True)
class Problem:
    """One problem found before anything runs.

    ``cell`` is the 1-based cell number in the source notebook (as JupyterLab counts cells),
    or None when the problem concerns the whole notebook.
    """

    message: str
    cell: int | None = None
    severity: str = "error"
    #: The variable the problem is about, where there is one (an undefined name).
    variable: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", one_line(self.message))

    def to_dict(self) -> dict[str, object]:
        """The problem as JSON-able data (for ``show --json`` and the server)."""
        return {"message": self.message, "cell": self.cell, "severity": self.severity}


class AnalysisError(MlopsError):
    """The notebook has problems that stop it from becoming a pipeline."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        first = problems[0] if problems else Problem("unknown analysis problem")
        # one line per problem: each message is one line already (Problem sees to it)
        text = "\n".join(p.message for p in problems)
        Exception.__init__(self, text)
        self.message, self.cell = text, first.cell


class SpecError(MlopsError):
    """A pipeline folder or its ``pipeline.yaml`` is missing or malformed."""


class ParameterError(MlopsError):
    """A parameter value given on the command line does not fit the pipeline."""


class OptionError(MlopsError):
    """A setting of an operation (a run's parallelism, its executor) that cannot be used.

    The core says what is wrong in the domain's words; ``option`` names the setting (a field
    of :class:`~jupyter_mlops.run.options.RunOptions`) so that each face can name it in its
    own: the CLI its flag, the server its form field.
    """

    def __init__(self, message: str, *, option: str) -> None:
        super().__init__(message)
        self.option = option


class ArtifactError(MlopsError):
    """A value cannot be saved or loaded safely between steps."""


class ContractError(MlopsError):
    """In a pipeline run, data or a metric broke what the notebook recorded; fails the step."""


class StepFailed(MlopsError):
    """A step of a pipeline run failed; the run stops and the CLI exits 1."""

    exit_code = 1

    def __init__(self, message: str, *, step: str, cell: int | None = None) -> None:
        super().__init__(message, cell=cell)
        self.step = step


class UnverifiedArtifactWarning(UserWarning):
    """An artifact was loaded with no hash from outside its folder to check it against."""
