"""What a check sees of the submission: a proxy whose every method is one sandbox request.

Checks run in the trusted parent. They build the student's objects in the child, ask for
outputs, layer traces and parameter lists, and decide themselves. Every failure of the
student's code arrives as a StudentCodeError with a one-line reason.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from grader.engine import recipes, training
from grader.engine.memory import release_free_memory
from grader.errors import MissingDefinition, StudentCodeError, StudentCrash, StudentTimeout
from grader.engine.harvest import Harvest, Statement
from grader.sandbox import Sandbox


@dataclass
class ForwardResult:
    output: torch.Tensor
    layers: list | None  # one record per parametrised layer call, in forward order


class Remote:
    """A handle on an object that lives in the child."""

    def __init__(self, submission: "Submission", handle: str, label: str):
        self._submission = submission
        self.handle = handle
        self.label = label  # how feedback names it, e.g. "UNet(3, 8, 24, 1)"

    def ref(self) -> dict:
        return {"$handle": self.handle}

    def _ask(self, op, **payload):
        # A request that hung, killed the child or answered nonsense fails at once when the
        # same class is asked the same again (and after two such failures, anything of that
        # kind): a hostile class costs at most two time limits or two fresh children.
        memo = (op, self.label.split("(", 1)[0], lambda: _signature(self.label, payload))
        return self._submission.ask(op, handle=self.handle, _memo=memo, **payload)

    def forward(
        self, *inputs, mode="train", trace=False, keep_values=False, grad=False, output_key=None
    ) -> ForwardResult:
        result = self._ask(
            "forward",
            inputs=list(inputs),
            mode=mode,
            trace=trace,
            keep_values=keep_values,
            grad=grad,
            output_key=output_key,
        )
        return ForwardResult(result["output"], result["layers"])

    def parameters(self) -> list[dict]:
        return self._ask("parameters")["named"]

    def parameter_count(self) -> int:
        return self._ask("parameters")["count"]

    def layer_states(self, probe: torch.Tensor) -> list[dict]:
        """This model's layer states in forward order on `probe` (grader.engine.layers.layer_states),
        as the child reports them (a claim: see grader.checks.verified_network)."""
        return self._ask("layer_states", probe=probe)["states"]

    def load_layer_states(self, states: list[dict], probe: torch.Tensor) -> list[str]:
        """Copy stored per-layer states (a list of {"weight": ..., "bias": ...} in forward
        order, as grader.engine.layers.layer_state makes them) onto this model; returns the problems."""
        return self._ask("load_layers", probe=probe, states=states)["problems"]

    def train(
        self,
        inputs,
        targets,
        loss,
        steps=40,
        batch_size=16,
        lr=1e-3,
        seed=0,
        device="cpu",
        output_key=None,
        timeout=None,
        loss_options=None,
        optimizer=training.DEFAULT_OPTIMIZER,
        optimizer_options=None,
    ) -> dict:
        """A short training run in the child (grader.engine.training.run_training): losses, which
        parameters changed, and predictions on the first few inputs. `loss`: a dotted name
        under `torch.` ("torch.nn.CrossEntropyLoss", a class built with `loss_options`, or a
        function such as "torch.nn.functional.mse_loss"), or the name of a student function
        loss(output, target). `optimizer`: a dotted torch.optim class name, built with lr and
        `optimizer_options`."""
        # A check's own mistake in these names fails here, not as the student's error.
        training.training_loss(loss, loss_options, student_function=lambda name: None)
        training.optimizer_class(optimizer)
        return self._submission.ask(
            "train",
            timeout,
            handle=self.handle,
            inputs=inputs,
            targets=targets,
            loss=loss,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            device=device,
            output_key=output_key,
            loss_options=loss_options,
            optimizer=optimizer,
            optimizer_options=optimizer_options,
        )

    def set_parameters(self, values: dict) -> None:
        """Set named parameters to values the parent chose."""
        self._ask("set_parameters", values=values)

    def get_parameters(self, names: list[str]) -> dict:
        """The named parameters' values, as the child reports them (a claim)."""
        return self._ask("get_parameters", names=list(names))

    def describe(self, path: str) -> dict:
        return self._ask("describe", path=path)

    def set_submodule(self, path: str, factory: str, *args, trainable_prefixes=None, **kwargs):
        self._ask(
            "set_submodule",
            path=path,
            factory=factory,
            args=list(args),
            kwargs=kwargs,
            trainable_prefixes=trainable_prefixes,
        )


class Submission:
    def __init__(
        self,
        harvest: Harvest,
        sandbox: Sandbox,
        regions: dict[str, list[Statement]],
        region_errors: dict[str, str],
    ):
        self.harvest = harvest
        self.sandbox = sandbox
        self.regions = regions
        self.region_errors = region_errors
        self._ids = itertools.count(1)
        # A construction or call that hung or killed the child fails at once afterwards, so
        # a hostile class costs one time limit, not one per hypothesis example.
        self._fatal: dict[tuple, StudentCodeError] = {}
        self._fatal_count: dict[tuple, int] = {}
        self._fatal_check: dict[int, str | None] = {}  # which check first met each failure
        self.current_check: str | None = None  # set by the plugin before each check
        self._handles: list[str] = []  # objects made in the child since the check began
        self._forgetting = True
        self._shared: dict = {}  # key -> (the child it lives in, the value): see shared()

    def _new_handle(self) -> str:
        handle = f"h{next(self._ids)}"
        self._handles.append(handle)
        return handle

    def shared(self, key, make):
        """What `make()` returns (child objects), made once for all the checks that ask with
        `key` and kept past the check that made it: several checks that only look at the same
        object (a model after the student's driver cell) need not each build it again. Made
        again when the child was replaced since; not kept when `make()` fails (each check
        then meets the failure itself)."""
        kept = self._shared.get(key)
        if kept is not None and kept[0] == self._child_number():
            return kept[1]
        first = len(self._handles)
        value = make()
        del self._handles[first:]  # not the check's to forget
        self._shared[key] = (self._child_number(), value)
        return value

    def _child_number(self) -> int:
        return getattr(self.sandbox, "children_started", 0)

    def check_finished(self) -> None:
        """Let the child drop the objects the check made (a fine-tuning model each): it would
        hold every check's until the grading ends. Never starts a child for it; a child that
        does not answer is not asked again (it only costs memory)."""
        handles, self._handles = self._handles, []
        release_free_memory()  # what the check itself held in the grader
        if not (handles and self._forgetting and self.sandbox.running):
            return
        try:
            self.sandbox.request("forget", handles=handles)
        except StudentCodeError:
            self._forgetting = False

    def use_child_for(self, hidden: bool) -> None:
        """Hidden checks get a child process of their own (grader.engine.plugin): nothing a child
        learns from their requests reaches a visible check's message."""
        self.sandbox.use_group("hidden" if hidden else "public")

    def budget_spent(self) -> str | None:
        """Why no more checks run (the grading's time budget is spent), or None."""
        budget = getattr(self.sandbox, "budget", None)
        return self.sandbox.budget_spent_text("this check") if budget and budget.spent() else None

    # -- names ------------------------------------------------------------------------
    def defines(self, name: str) -> bool:
        self._boot()
        return name in self.sandbox.boot.names

    def require(self, *names: str) -> None:
        for name in names:
            if not self.defines(name):
                raise MissingDefinition(self.why_missing(name))

    def why_missing(self, name: str) -> str:
        boot = self.sandbox.boot
        for index, st in enumerate(self.harvest.statements):
            if name not in st.defines:
                continue
            where = self.harvest.where(st)
            if boot and index in boot.fatal:
                return f"`{name}` was skipped: running its definition ({where}) {boot.fatal[index]}"
            for problem in boot.problems if boot else []:
                if problem["index"] == index:
                    from grader.sandbox import format_error

                    return f"`{name}` could not be defined ({where}): {format_error(problem['error'])}"
        return self.harvest.why_missing(name)

    def first_defining_name(self, *names: str) -> str | None:
        """The first of several accepted names the submission defines (e.g. a renamed
        function from an older edition)."""
        return next((n for n in names if self.defines(n)), None)

    # -- requests ---------------------------------------------------------------------
    def _boot(self):
        if self.sandbox.boot is None:
            try:
                self.sandbox.ensure_started()
            except StudentCodeError as exc:
                raise StudentCrash(f"the submission could not be loaded: {exc}")

    def ask(self, op: str, timeout: float | None = None, _memo: tuple | None = None, **payload):
        """One request. `_memo` = (kind, name, arguments): a request that hung or killed the
        child fails at once when repeated with the same arguments, and after two such
        failures with any arguments, so hostile code costs at most two time limits. The
        arguments may be given as a function of none that returns them: their text (tensors'
        repr) is made only when a failure is remembered or looked up."""
        error = None
        if _memo and self._fatal:
            _memo = _with_arguments(_memo)
            error = self._fatal.get(_memo) or self._fatal.get(_memo[:2])
        repeated = error is not None and self._fatal_check.get(id(error)) != self.current_check
        if error is None:
            try:
                return self._request_surviving_outside_kills(op, timeout, payload)
            except (StudentTimeout, StudentCrash) as exc:
                error = exc
                self._fatal_check[id(exc)] = self.current_check
                if _memo:
                    _memo = _with_arguments(_memo)
                    self._fatal[_memo] = exc
                    self._fatal_count[_memo[:2]] = self._fatal_count.get(_memo[:2], 0) + 1
                    if self._fatal_count[_memo[:2]] >= 2:
                        self._fatal[_memo[:2]] = exc
        # Raised here, outside the except block, for first and repeated failures alike: the
        # same exception from the same place, so hypothesis's replay sees the same failure.
        raise type(error)(f"{error}{' (as in an earlier check)' if repeated else ''}")

    def _request_surviving_outside_kills(self, op, timeout, payload):
        """Our own limits never SIGKILL the child (the memory limit makes allocations fail).
        A SIGKILL comes from outside, most likely the machine's OOM killer when it is short of
        memory: that must not cost the student points, so the request runs once more on a
        fresh child. Code that kills itself is killed twice and fails as before."""
        try:
            return self.sandbox.request(op, timeout, **payload)
        except StudentCrash as exc:
            if getattr(exc, "signal", None) != "SIGKILL":
                raise
        return self.sandbox.request(op, timeout, **payload)

    def build(self, name: str, *args, seed: int = 0, timeout: float | None = None, **kwargs) -> Remote:
        self.require(name)
        handle = self._new_handle()
        label = f"{name}({', '.join(map(repr, args))})"
        try:
            self.ask(
                "construct",
                timeout,
                _memo=("construct", name, lambda: repr((args, kwargs))),
                name=name,
                args=list(args),
                kwargs=kwargs,
                seed=seed,
                handle=handle,
            )
        except StudentCodeError as exc:
            error = exc
        else:
            return Remote(self, handle, label)
        raise type(error)(f"{label} failed: {error}")  # outside `except`: no chained context

    def build_trusted(self, factory: str | dict, timeout: float | None = None, **kwargs) -> Remote:
        """An object built from library code inside the child, for student code to act on:
        `factory` is "module:attribute" (called with `kwargs`, e.g. a torchvision model) or a
        recipe (grader.engine.recipes). Cached there: each call gets a fresh deep copy."""
        handle = self._new_handle()
        # Not student code: its own, generous limit, so a busy machine cannot cost points.
        self.ask(
            "build_trusted",
            timeout or self.sandbox.limits.library_seconds,
            factory=factory,
            kwargs=kwargs,
            handle=handle,
        )
        return Remote(self, handle, recipes.label(factory))

    def call(
        self, name: str, *args, grad_wrt=(), source_pattern=None, wanted=None, timeout=None, **kwargs
    ) -> dict:
        """Call the student's function `name`. `source_pattern`: call its newest definition
        whose source matches (a regular expression, never shown to the student); `wanted`:
        what that definition is, in the student's words, for when none matches ("that takes
        (args, model) ...")."""
        self.require(name)
        return self.ask(
            "call",
            timeout,
            _memo=("call", name, lambda: repr(args)),
            name=name,
            args=[_arg(a) for a in args],
            kwargs={k: _arg(v) for k, v in kwargs.items()},
            grad_wrt=list(grad_wrt),
            source_pattern=source_pattern,
            wanted=wanted,
        )

    def run_region(
        self, region: str, bindings: dict, keep: list[str], timeout: float | None = None
    ) -> dict[str, Remote]:
        if region not in self.regions:
            raise StudentCodeError(self.region_errors.get(region, f"region {region} not found"))
        self._boot()
        handles = {name: self._new_handle() for name in keep}
        statements = [st.to_wire() for st in self.regions[region]]
        self.ask(
            "run_region",
            timeout,
            _memo=("region", region, ""),
            statements=statements,
            bindings={k: _arg(v) for k, v in bindings.items()},
            keep=handles,
        )
        return {name: Remote(self, h, name) for name, h in handles.items()}

    def transplant(
        self, harness, entry: str, regions: list[str], *args, timeout: float | None = None, **kwargs
    ) -> dict:
        """Run trusted `harness` code (a self-contained Python file, sent as source) in the child
        with the submission's file regions in it (grader.engine.transplant): `entry(regions, *args,
        **kwargs)`; returns what it returned. A region that is missing (its file was not
        handed in, the code was not found) fails here with the reason; an error raised while
        it ran names its line in the student's file."""
        from pathlib import Path

        from grader.sandbox import format_error

        for name in regions:
            if name not in self.regions:
                raise StudentCodeError(self.region_errors.get(name, f"region {name} not found"))
        harness = Path(harness)
        answer = self.ask(
            "transplant",
            timeout,
            _memo=("transplant", entry, lambda: repr((regions, args, kwargs))),
            source=harness.read_text(encoding="utf-8"),
            filename=harness.name,
            entry=entry,
            regions={name: self.regions[name].to_wire() for name in regions},
            args=[_arg(a) for a in args],
            kwargs={k: _arg(v) for k, v in kwargs.items()},
        )
        if not isinstance(answer, dict) or ("error" not in answer and "result" not in answer):
            raise StudentCrash("the sandbox sent a malformed answer")
        if "error" in answer:
            error = answer["error"]
            raise StudentCodeError(format_error(error if isinstance(error, dict) else {}))
        return answer["result"]

    def call_until_optimizer(
        self,
        name: str,
        args: list,
        model: Remote,
        source_pattern: str | None = None,
        wanted: str | None = None,
        timeout: float | None = None,
    ) -> dict:
        """As call(), stopping the function when it builds a torch optimizer."""
        self.require(name)
        return self.ask(
            "call_until_optimizer",
            timeout,
            _memo=("optimizer", name, ""),
            name=name,
            args=[_arg(a) for a in args],
            model_handle=model.handle,
            source_pattern=source_pattern,
            wanted=wanted,
        )


def _with_arguments(memo: tuple) -> tuple:
    """A request's memo (kind, name, arguments) with its arguments' text made, where they
    were given as a function."""
    kind, name, arguments = memo
    return (kind, name, arguments() if callable(arguments) else arguments)


def _signature(label: str, payload) -> str:
    """What tells two requests apart for remembering failures: the object and the request's
    values, tensors by their shape and dtype (their values would make every key different)."""

    def walk(value):
        if isinstance(value, torch.Tensor):
            return f"tensor{list(value.shape)}{value.dtype}"
        if isinstance(value, dict):
            return {k: walk(v) for k, v in sorted(value.items())}
        if isinstance(value, (list, tuple)):
            return [walk(v) for v in value]
        return value

    return f"{label}:{walk(payload)!r}"[:2000]


def attrdict(values: dict) -> dict:
    """An argument that arrives in the child as an AttrDict (the notebooks' `args`)."""
    return {"$attrdict": values}


def _arg(value):
    if isinstance(value, Remote):
        return value.ref()
    return value
