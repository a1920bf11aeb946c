"""Exceptions that carry a one-line reason meant for a person, named by whose failure it is
(docs/design.md, trust model, rule 7):

    the student's   SubmissionError (the submission cannot be used at all) and the
                    StudentCodeError family (one request failed): both become results
    a person's      UsageError, AssignmentError: a bad path, option or assignment file; one
                    line and exit status 2, never a result
    the machine's   MachineError, UnsafeSandbox: this machine cannot grade now; one line and
                    exit status 2, or in a batch the submission is left ungraded and tried
                    again, never a result
"""


class GraderError(Exception):
    """Base class: everything here has a message meant for a person."""


class SubmissionError(GraderError):
    """The submission cannot be used at all (not a notebook, broken JSON, no code): the
    student's failure. Its result fails every check it would have run, exit status 2."""


class UsageError(GraderError):
    """A person's mistake: a path that does not exist, an unknown assignment, an option that
    cannot be used. One line, exit status 2, and no result is recorded."""


class AssignmentError(UsageError):
    """An assignment's description (assignment.toml, family.toml) is wrong: the instructor's
    mistake, reported in one line naming the file and the key."""


class MachineError(GraderError):
    """This machine or the grader itself cannot grade now (the sandbox cannot start, the
    grader broke). Never recorded as a student's result: exit status 2, or in a batch the
    submission is left ungraded and tried again."""


class UnsafeSandbox(MachineError):
    """Instructor grading where the sandbox cannot hide the file system (exit status 2)."""


class StudentCodeError(GraderError):
    """The student's code raised, crashed, hung or answered nonsense during one request.

    Checks let it propagate: the pytest plugin turns it into a failed check whose message is
    this exception's text. It is never a crash of the grader.
    """


class StudentTimeout(StudentCodeError):
    """A request did not finish within its wall-time limit; the child was killed."""


class BudgetSpent(StudentTimeout):
    """The grading's time budget (grader.engine.budget) ran out: the submission is too slow."""


class StudentCrash(StudentCodeError):
    """The child process died (exit, signal, memory limit) while answering."""


class MissingDefinition(StudentCodeError):
    """A name the checks need is not defined (does not parse, raised, never written). The
    input of the check does not matter for it, so feedback shows none."""
