"""What a grading is asked to do, as plain data: built once from the command line, pickled to
the batch workers, and the source of the batch's resume stamp. Imports nothing heavy (the
batch scheduler, which never imports torch, builds one)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Options:
    # "auto": CUDA when present, decided by `resolved()` where torch is imported anyway.
    device: str = "cpu"
    # Limits given on the command line; they win over the assignment's [limits].
    limit_overrides: dict = field(default_factory=dict)
    # Grade only the checks of these parts and kinds (empty: all), and none of skip_kinds.
    parts: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    skip_kinds: tuple[str, ...] = ()
    pytest_args: tuple = ()
    # Run only the public checks (grader.public.expectations), as on a student's machine. Automatic when
    # the reference solution is not installed.
    public_only: bool = False
    # Grade with the reference installed even where the sandbox could not isolate the file
    # system (each result then carries the warning).
    allow_unsafe_sandbox: bool = False
    # The secret seed of the instructor side's challenges (grader.public.expectations.Expectations, and
    # the held-out data and starting weights of the training checks). None: drawn from
    # os.urandom for each grading (a batch draws one for all); `--seed` replays a run.
    seed: int | None = None
    # The whole grading's time budget in seconds; None: the assignment's reference time on
    # this machine times grader.engine.budget.BUDGET_FACTOR, at least BUDGET_FLOOR_SECONDS.
    budget_seconds: float | None = None

    @classmethod
    def from_args(cls, args) -> Options:
        """The options of `grade`'s command line (grader.cli.build_parser)."""
        overrides = {}
        if args.timeout:
            overrides = {"request_seconds": args.timeout, "boot_seconds": args.timeout}
        return cls(
            device=args.device,
            limit_overrides=overrides,
            parts=tuple(dict.fromkeys(args.part or [])),
            skip_kinds=("training",) if args.no_train else (),
            public_only=bool(getattr(args, "public_only", False)),
            allow_unsafe_sandbox=bool(getattr(args, "allow_unsafe_sandbox", False)),
            seed=getattr(args, "seed", None),
            budget_seconds=getattr(args, "budget", None),
        )

    def selects(self, marks: dict) -> bool:
        """Whether a check with these markers (grader.engine.plugin.grade_marks) is run."""
        return (
            (not self.parts or marks.get("part") in self.parts)
            and (not self.kinds or marks.get("kind") in self.kinds)
            and marks.get("kind") not in self.skip_kinds
        )

    def resolved(self) -> Options:
        """The same options with device "auto" made "cuda" or "cpu" (imports torch)."""
        if self.device != "auto":
            return self
        import torch

        return replace(self, device="cuda" if torch.cuda.is_available() else "cpu")

    def stamp(self) -> dict:
        """What changes a grading's outcome, for the batch's resume stamp. Not the seed: it is
        drawn anew for each grading. The inner pytest also reads PYTEST_ADDOPTS, which can
        deselect checks."""
        return {
            "parts": sorted(self.parts),
            "kinds": sorted(self.kinds),
            "skip_kinds": sorted(self.skip_kinds),
            "device": self.device,
            "public_only": self.public_only,
            "limit_overrides": {k: self.limit_overrides[k] for k in sorted(self.limit_overrides)},
            "budget_seconds": self.budget_seconds,
            "pytest_args": list(self.pytest_args),
            "pytest_addopts": os.environ.get("PYTEST_ADDOPTS", ""),
            "allow_unsafe_sandbox": self.allow_unsafe_sandbox,
        }
