"""Exceptions that carry a student-readable, one-line reason."""


class GraderError(Exception):
    """Base class: everything here has a message meant for a person."""


class SubmissionError(GraderError):
    """The submission (or the command line) cannot be used at all: exit status 2."""


class UnsafeSandbox(SubmissionError):
    """Instructor grading where the sandbox cannot hide the file system (exit status 2)."""


class StudentCodeError(GraderError):
    """The student's code raised, crashed, hung or answered nonsense during one request.

    Checks let it propagate: the pytest plugin turns it into a failed check whose message is
    this exception's text. It is never a crash of the grader.
    """


class StudentTimeout(StudentCodeError):
    """A request did not finish within its wall-time limit; the child was killed."""


class StudentCrash(StudentCodeError):
    """The child process died (exit, signal, memory limit) while answering."""


class MissingDefinition(StudentCodeError):
    """A name the checks need is not defined (does not parse, raised, never written). The
    input of the check does not matter for it, so feedback shows none."""


class AssignmentError(SubmissionError):
    """An assignment's description (assignment.toml, family.toml) is wrong: the instructor's
    mistake, reported in one line naming the file and the key."""
