"""The sandboxed child: holds the student's objects and answers the parent's requests.

It runs in a process forked from a warm server that has already imported torch. Before any
student code runs it closes stdin, captures output, drops privileges and sets its limits
(see `confine`). It only answers requests; it never decides a grade. Every reply is built with
`grader.sandbox.wire` (JSON and raw bytes), which the parent reads without unpickling.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import linecache
import os
import re
import signal
import sys
import traceback

import torch
from torch import nn

from grader.sandbox import confine as os_layers
from grader.sandbox import server
from grader.engine import layers, recipes
from grader.engine.memory import release_free_memory
from grader.sandbox import wire

try:
    import resource
except ImportError:  # Windows: the in-process self-check (grader.student.selfcheck) needs no limits
    resource = None


class _CappedWriter(io.TextIOBase):
    """sys.stdout/sys.stderr for student code: keeps the first `cap` bytes, drops the rest."""

    def __init__(self, fd: int, cap: int):
        self._fd, self._left = fd, cap

    def writable(self):
        return True

    def write(self, text):
        if self._left > 0:
            data = text.encode("utf-8", "replace")[: self._left]
            self._left -= len(data)
            try:
                os.write(self._fd, data)
            except OSError:
                self._left = 0
        return len(text)


def confine(config: dict, channel_fd: int, output_fd: int) -> list[str]:
    """Box this process in before student code runs (grader.sandbox.confine has the layers); returns
    what held, each missing layer as "no ...: why"."""
    done: list[str] = []

    def attempt(what: str, action):
        try:
            result = action()
        except Exception as exc:  # a layer the OS does not offer: say so, go on
            done.append(f"no {what}: {exc}"[:200])
            return None
        return result

    # Descriptors: stdin is /dev/null, output goes to the file the parent opened (it never
    # reads a path the child could replace), and nothing else inherited stays open.
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    os.closerange(3, channel_fd)
    os.closerange(channel_fd + 1, 1 << 16)
    _forget_inherited_servers()
    sys.stdin = open(0, closefd=False)  # fd 0 is /dev/null: no other descriptor
    sys.stdout = _CappedWriter(1, config["output_bytes"])
    sys.stderr = _CappedWriter(2, config["output_bytes"])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over-long C-level writes fail, not kill
    workdir = config["workdir"]
    os.environ.clear()
    os.environ.update(
        server.minimal_environment(HOME=workdir, TMPDIR=workdir, MPLCONFIGDIR=workdir, LANG="C.UTF-8")
    )

    landlock = None
    as_root = os.geteuid() == 0
    mounts = None
    if as_root:
        box = config.get("cgroup")
        if box is not None:
            done.extend(box.join())
        if os_layers.unshare(os_layers.CLONE_NEWNET):
            done.append("network namespace (no interfaces)")
        uid = os_layers.UID_BASE + os.getpid()
        # Before Landlock's rules are made: they must name the tmpfs, not the folder under it.
        mounts = attempt(
            "mount namespace",
            lambda: os_layers.private_mounts(workdir, config["workdir_bytes"], uid, config["hide"]),
        )
        os.chdir(workdir)
        landlock = attempt(
            "landlock",
            lambda: os_layers.Landlock(config["readable"], [workdir], config["devices"], config["listable"]),
        )
        os.chown(workdir, uid, uid)
        # Keep the right to enter a 0700 home only where Landlock confines it.
        os_layers.become_sandbox_user(uid, keep_search=landlock is not None and config["keep_search"])
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGKILL)  # leftovers of an earlier sandbox with this uid
        resource.setrlimit(resource.RLIMIT_NPROC, (config["processes"],) * 2)
        done.append("own uid")
        # Without Landlock (an old kernel, Docker's seccomp on older engines), file
        # permissions may still keep every secret out of this uid's reach: a probe says so.
        if landlock is None and config["secrets"]:
            readable = os_layers.readable_secret(config["secrets"])
            if readable is None:
                done.append(f"{os_layers.OWN_UID_SECRETS_UNREADABLE} ({len(config['secrets'])} paths probed)")
            else:
                done.append(f"no {os_layers.OWN_UID_SECRETS_UNREADABLE}: it can read {readable}"[:300])
    else:
        if config.get("namespaces", True) and os_layers.enter_user_pid_namespace():
            done.append("user+PID+network namespace")
            mounts = attempt(
                "mount namespace",
                lambda: os_layers.private_mounts(
                    workdir, config["workdir_bytes"], os.getuid(), config["hide"], new_namespace=False
                ),
            )
        else:
            done.append(
                "no process containment: the kernel refuses unprivileged namespaces, "
                "so processes the submission leaves are not killed"
            )
        os.chdir(workdir)
        landlock = attempt(
            "landlock",
            lambda: os_layers.Landlock(config["readable"], [workdir], config["devices"], config["listable"]),
        )
    mapped = _mapped_bytes()
    if config["memory_bytes"] > 0:
        resource.setrlimit(resource.RLIMIT_AS, (mapped + config["memory_bytes"],) * 2)
        done.append(f"memory limit {config['memory_bytes'] // 2**20} MiB above {mapped // 2**20} MiB mapped")
    else:
        done.append("no memory limit (CUDA maps more address space than any useful limit)")
    resource.setrlimit(resource.RLIMIT_CPU, (config["cpu_seconds"], config["cpu_seconds"] + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (config["file_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if landlock is not None:
        attempt("landlock", lambda: done.append(landlock.enforce()))
    attempt("seccomp", lambda: done.append(os_layers.install_seccomp()))
    if not as_root:
        with contextlib.suppress(OSError):
            os_layers.set_capabilities(0)  # those a user namespace gave
    if mounts:
        done.extend(mounts)
    _forget_editable_finders()
    torch.set_num_threads(config["threads"])
    return done


def _forget_editable_finders() -> None:
    """An editable install of the grader adds an import finder whose data names the source
    checkout: the child needs none of it (the engine's package is imported already)."""
    import gc

    editable = "__editable__"
    sys.meta_path[:] = [f for f in sys.meta_path if editable not in getattr(type(f), "__module__", "")]
    sys.path_hooks[:] = [h for h in sys.path_hooks if editable not in getattr(h, "__module__", "")]
    sys.path[:] = [p for p in sys.path if editable not in p]
    for name in [n for n in sys.modules if n.startswith(editable)]:
        del sys.modules[name]
    sys.path_importer_cache.clear()
    gc.collect()


def _forget_inherited_servers() -> None:
    """multiprocessing's helpers (resource tracker, forkserver) were reached through
    descriptors we just closed: make it start its own if student code asks."""
    with contextlib.suppress(Exception):
        from multiprocessing import resource_tracker

        resource_tracker._resource_tracker._fd = None
        resource_tracker._resource_tracker._pid = None
    with contextlib.suppress(Exception):
        from multiprocessing import forkserver

        forkserver._forkserver._forkserver_address = None
        forkserver._forkserver._forkserver_alive_fd = None


def _mapped_bytes() -> int:
    # The CUDA build of torch maps GBs of address space before any work: the limit on
    # address space has to be counted from what is already mapped.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


class _OptimizerReached(BaseException):
    """Stops a student's function when it builds its optimizer (BaseException: a student's
    `except Exception` cannot swallow it)."""

    def __init__(self, params):
        super().__init__()
        self.params = params


class AttrDict(dict):
    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name)

    def __setattr__(self, name, value):
        self[name] = value


class _TorchSettings:
    """torch's process-wide settings that student code may change (W2020's handout train()
    sets 5 threads "to prevent crash in Teaching Labs"; notebooks turn on anomaly detection,
    turn gradients off, change the default dtype): what a request changes holds for that
    request only, and every request starts from the same state, whichever checks ran before.
    Five threads on two cores in every later check had made W2020's fine-tuning check twice
    as slow, and in a batch each child took its neighbours' cores."""

    def __init__(self, threads: int):
        self.saved = (threads, torch.is_grad_enabled(), torch.is_anomaly_enabled(), torch.get_default_dtype())

    def restore(self) -> None:
        threads, grad, anomaly, dtype = self.saved
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        if torch.is_grad_enabled() != grad:
            torch.set_grad_enabled(grad)
        if torch.is_anomaly_enabled() != anomaly:
            torch.autograd.set_detect_anomaly(anomaly)
        if torch.get_default_dtype() != dtype:
            torch.set_default_dtype(dtype)


class Child:
    def __init__(self, conn, statements: list[dict], threads: int | None = None):
        self.conn = conn
        # torch's process-wide settings as the sandbox set them, put back after each request
        # (None: left alone, as in a student's own kernel).
        self.settings = None if threads is None else _TorchSettings(threads)
        self.fd = conn.fileno() if conn is not None else None  # None: grader.student.selfcheck
        self.ns: dict = {"__name__": "__student__", "__builtins__": __builtins__}
        self.versions: dict[str, list] = {}  # every definition of each top-level function
        self.objects: dict[str, object] = {}
        self.pristine: dict[str, object] = {}
        self.statements = statements

    # -- protocol ---------------------------------------------------------------------
    def send(self, payload):
        wire.send_frame(self.fd, wire.encode(payload))

    def serve(self):
        while True:
            try:
                request = wire.decode(wire.recv_frame(self.fd))
            except (EOFError, OSError):
                return
            op = request.pop("op")
            handler = getattr(self, "op_" + op, None)
            try:
                if handler is None:
                    raise ValueError(f"unknown request {op!r}")
                result = handler(**request)
                self.send({"ok": True, "result": result})
            except BaseException as exc:  # SystemExit and KeyboardInterrupt from students too
                self.send({"ok": False, "error": describe_exception(exc)})
            finally:
                if self.settings is not None:
                    self.settings.restore()

    # -- loading ----------------------------------------------------------------------
    def op_boot(self, skip: list[int]):
        """Run the harvested statements in order; report what failed, keep going."""
        problems = []
        for i, st in enumerate(self.statements):
            if i in skip:
                continue
            self.send({"progress": i})
            try:
                code = _compile(st["source"], st["cell"], st["lineno"])
                exec(code, self.ns)
            except BaseException as exc:
                problems.append({"index": i, "error": describe_exception(exc)})
                continue
            tree = ast.parse(st["source"])
            for node in tree.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    self.versions.setdefault(node.name, []).append(self.ns.get(node.name))
        return {"problems": problems, "names": sorted(k for k in self.ns if not k.startswith("__"))}

    # -- values -------------------------------------------------------------------------
    def value(self, spec):
        """Decode an argument: {"$handle": h}, {"$attrdict": {...}}, tensors, plain JSON."""
        if isinstance(spec, dict):
            if set(spec) == {"$handle"}:
                return self.objects[spec["$handle"]]
            if set(spec) == {"$attrdict"}:
                return AttrDict({k: self.value(v) for k, v in spec["$attrdict"].items()})
            return {k: self.value(v) for k, v in spec.items()}
        if isinstance(spec, list):
            return [self.value(v) for v in spec]
        return spec

    def lookup(self, name: str, source_pattern: str | None = None, wanted: str | None = None):
        """The student's `name`; with `source_pattern`, its newest definition whose source
        matches (a notebook may define `train` twice). `wanted` says, for the student, which
        definition that is; the pattern itself is never shown."""
        if source_pattern is None:
            if name not in self.ns:
                raise NameError(f"name '{name}' is not defined")
            return self.ns[name]
        for fn in reversed(self.versions.get(name, [])):
            code = getattr(fn, "__code__", None)
            if code is not None and re.search(source_pattern, _source_of(fn)):
                return fn
        raise NameError(not_defined_text(name, wanted))

    # -- requests -------------------------------------------------------------------------
    def op_construct(self, name, args, kwargs, seed, handle):
        torch.manual_seed(seed)
        obj = self.lookup(name)(*self.value(args), **self.value(kwargs))
        self.objects[handle] = obj
        return {"type": type(obj).__name__, "is_module": isinstance(obj, nn.Module)}

    def op_build_trusted(self, factory, kwargs, handle, seed=0):
        """Build an object from library code named by the parent: "module:attribute" called
        with `kwargs` (e.g. a torchvision model), or a recipe (grader.engine.recipes: nested calls of
        torch and torchvision callables). The pristine object (the warm server's, when it
        prebuilt this recipe) is kept, and each request gets a copy of it of its own
        (recipes.copy_of: copy-on-write, what the request's user writes is its own)."""
        recipe = recipes.as_recipe(factory, kwargs)
        key = (recipes.key(recipe), seed)
        if key not in self.pristine:
            self.pristine[key] = recipes.pristine(recipe, seed)
        self.objects[handle] = recipes.copy_of(self.pristine[key])
        return {"type": type(self.objects[handle]).__name__}

    def op_forward(
        self, handle, inputs, mode, trace=False, keep_values=False, grad=False, seed=0, output_key=None
    ):
        module = self.objects[handle]
        module.train(mode == "train")
        torch.manual_seed(seed)
        with torch.set_grad_enabled(grad):
            if trace:
                out, records = layers.trace(module, tuple(inputs), keep_values)
            else:
                out, records = module(*inputs), None
        if output_key is not None and isinstance(out, dict):
            out = out[output_key]
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"forward returned {type(out).__name__}, not a tensor")
        return {"output": out.detach(), "layers": records}

    # What the model holds is read from nn.Module's own storage (grader.engine.layers.own_*), never
    # through methods the student's object may have replaced on itself.
    def op_parameters(self, handle):
        params = layers.own_named_parameters(self.objects[handle])
        named = [
            {"name": n, "shape": list(p.shape), "requires_grad": bool(p.requires_grad)} for n, p in params
        ]
        return {"named": named, "count": sum(p.numel() for _, p in params)}

    def op_layer_states(self, handle, probe):
        """The model's layer states (weight, bias, running statistics) in the order forward()
        first calls its layers on `probe`: what the parent evaluates a trained network with."""
        return {"states": layers.layer_states(self.objects[handle], probe)}

    def op_load_layers(self, handle, probe, states):
        """Copy the reference's layer states onto the student's layers, matched by the order
        forward() first calls them, and by shape."""
        problems, count = layers.load_layer_states(self.objects[handle], probe, states)
        return {"problems": problems, "count": count}

    def op_call(self, name, args, kwargs, grad_wrt=(), source_pattern=None, wanted=None):
        fn = self.lookup(name, source_pattern, wanted)
        args = self.value(args)
        for i in grad_wrt:
            args[i] = args[i].detach().clone().requires_grad_(True)
        with torch.set_grad_enabled(bool(grad_wrt)):
            out = fn(*args, **self.value(kwargs))
        result = {"output": out.detach() if isinstance(out, torch.Tensor) else _plain(out), "grads": []}
        if grad_wrt:
            if not isinstance(out, torch.Tensor) or not out.requires_grad:
                result["grads"] = [None for _ in grad_wrt]
            else:
                grads = torch.autograd.grad(out.sum(), [args[i] for i in grad_wrt], allow_unused=True)
                result["grads"] = [g.detach() if g is not None else None for g in grads]
        return result

    def op_run_region(self, statements, bindings, keep):
        """Run module-level student code (a driver-cell region) with some names bound, then
        keep the named results as handles."""
        scope = dict(self.ns)
        scope.update({k: self.value(v) for k, v in bindings.items()})
        for st in statements:
            exec(_compile(st["source"], st["cell"], st["lineno"]), scope)
        for name, handle in keep.items():
            if name not in scope:
                raise NameError(f"the region did not leave a '{name}'")
            self.objects[handle] = scope[name]
        return {}

    def op_set_parameters(self, handle, values):
        """Give named parameters values the parent chose (e.g. a layer's starting weights for
        a run the parent reproduces)."""
        params = dict(layers.own_named_parameters(self.objects[handle]))
        with torch.no_grad():
            for name, value in values.items():
                if name not in params:
                    raise KeyError(f"the model has no parameter {name!r}")
                if tuple(params[name].shape) != tuple(value.shape):
                    raise ValueError(
                        f"{name} has shape {list(params[name].shape)}, the grader's "
                        f"values {list(value.shape)}"
                    )
                params[name].copy_(value)
        return {}

    def op_forget(self, handles):
        """Drop objects the parent no longer needs (a check's models): a grading builds many,
        and a child would otherwise hold them all until it ends."""
        for handle in handles:
            self.objects.pop(handle, None)
        release_free_memory()
        return {}

    def op_get_parameters(self, handle, names):
        params = dict(layers.own_named_parameters(self.objects[handle]))
        return {name: params[name].detach().to("cpu") for name in names if name in params}

    def op_describe(self, handle, path):
        module = layers.own_submodule(self.objects[handle], path)
        shapes = {name: list(p.shape) for name, p in layers.own_named_parameters(module)}
        return {"type": type(module).__name__, "config": layers.layer_config(module), "parameters": shapes}

    def op_set_submodule(self, handle, path, factory, args, kwargs, trainable_prefixes=None):
        """Trusted model surgery the parent asks for (e.g. the correct head for a check that
        grades another region in isolation)."""
        model = self.objects[handle]
        module_name, attr = factory.split(":")
        layers.own_set_submodule(
            model, path, getattr(importlib.import_module(module_name), attr)(*args, **kwargs)
        )
        if trainable_prefixes is not None:
            for name, p in layers.own_named_parameters(model):
                p.requires_grad_(any(name.startswith(pre) for pre in trainable_prefixes))
        return {}

    def op_train(
        self,
        handle,
        inputs,
        targets,
        loss,
        steps,
        batch_size,
        lr,
        seed=0,
        device="cpu",
        output_key=None,
        loss_source_pattern=None,
        loss_options=None,
        optimizer=None,
        optimizer_options=None,
    ):
        """A short training run of one of the child's models (see grader.engine.training). `loss`:
        a dotted name under `torch.` (a class is built with `loss_options`; a function is
        called as loss(output, target)), or the name of a student function loss(output,
        target). `optimizer`: a dotted name under `torch.optim.` (default Adam), built with
        lr and `optimizer_options`."""
        from grader.engine.training import DEFAULT_OPTIMIZER, run_training, training_loss

        loss_fn = training_loss(loss, loss_options, lambda name: self.lookup(name, loss_source_pattern))
        return run_training(
            self.objects[handle],
            inputs,
            targets,
            loss_fn,
            steps,
            batch_size,
            lr,
            seed,
            device,
            output_key,
            optimizer=optimizer or DEFAULT_OPTIMIZER,
            optimizer_options=optimizer_options,
        )

    def op_transplant(self, source, filename, entry, regions, args, kwargs):
        """Run trusted harness code the parent sent, with the submission's file regions in it
        (grader.engine.transplant); errors come back as part of the answer, located in the file."""
        from grader.engine.transplant import run_in_child

        return run_in_child(source, filename, entry, regions, self.value(args), self.value(kwargs))

    def op_call_until_optimizer(self, name, args, model_handle, source_pattern=None, wanted=None):
        """Call a student function for real and stop it when it builds a torch optimizer;
        report which of the model's parameters it handed over."""
        fn = self.lookup(name, source_pattern, wanted)
        model = self.objects[model_handle]
        names = {id(p): n for n, p in layers.own_named_parameters(model)}
        original = torch.optim.Optimizer.__init__

        def intercept(opt, params, *a, **k):
            raise _OptimizerReached(params)

        torch.optim.Optimizer.__init__ = intercept
        try:
            fn(*self.value(args))
        except _OptimizerReached as reached:
            return {"reached": True, "params": _describe_params(reached.params, names)}
        finally:
            torch.optim.Optimizer.__init__ = original
        return {"reached": False, "params": []}


def _describe_params(params, names) -> list[dict]:
    out = []
    items = [params] if isinstance(params, torch.Tensor) else list(params)
    for item in items:
        group = item["params"] if isinstance(item, dict) else [item]
        group = [group] if isinstance(group, torch.Tensor) else list(group)
        for p in group:
            if isinstance(p, tuple) and len(p) == 2:  # named parameters handed over
                p = p[1]
            shape = list(p.shape) if isinstance(p, torch.Tensor) else None
            out.append({"name": names.get(id(p)), "shape": shape})
    return out


def not_defined_text(name: str, wanted: str | None) -> str:
    if wanted:
        return f"the notebook defines no `{name}` {wanted}"
    return f"the notebook defines no `{name}` of the kind this check needs"


def _compile(source: str, cell: int | str, lineno: int):
    """Compile one statement under the name `<code cell N>` (`cell`: its position among code
    cells, 0-based, or a name such as "In [4]") with its real line numbers, and tell linecache
    its text, so tracebacks and inspect.getsource point into the notebook."""
    filename = f"<{cell}>" if isinstance(cell, str) else f"<code cell {cell + 1}>"
    tree = ast.parse(source)
    ast.increment_lineno(tree, lineno - 1)
    entry = linecache.cache.get(filename)
    lines = list(entry[2]) if entry else []
    new = source.splitlines(keepends=True)
    lines.extend("\n" for _ in range(lineno - 1 + len(new) - len(lines)))
    lines[lineno - 1 : lineno - 1 + len(new)] = [ln if ln.endswith("\n") else ln + "\n" for ln in new]
    linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)
    return compile(tree, filename, "exec")


def _source_of(fn) -> str:
    try:
        import inspect

        return inspect.getsource(fn)
    except (OSError, TypeError):
        return " ".join(fn.__code__.co_names + fn.__code__.co_varnames)


def _plain(value):
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return repr(value)[:200]


def describe_exception(exc: BaseException) -> dict:
    """Type, message and the innermost line of student code (a frame _compile named)."""
    where = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.startswith(("<code cell ", "<In [")):
            where = f"{frame.filename.strip('<>')}, line {frame.lineno}"
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, SystemExit):
        message = f"the code called exit({exc.code!r})"
    return {"type": type(exc).__name__, "message": message[:500], "where": where}


def watch_parent(fd: int) -> None:
    """Exit when the grader that asked for this child is gone (killed outright), even while
    student code is stuck in a loop: a daemon thread gets the GIL between bytecodes. It
    waits for the channel's far end to close (it cannot signal outside its box)."""
    import select
    import threading

    def watch():
        poller = select.poll()
        poller.register(fd, select.POLLRDHUP)
        while True:
            for _, events in poller.poll():
                if events & (select.POLLRDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL):
                    os._exit(70)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def main(conn, output, config: dict, statements: list[dict]):
    """Entry point of the child process (a multiprocessing target). `output` is a write-only
    connection wrapping the file the parent reads the student's prints from."""
    os.set_blocking(conn.fileno(), True)
    output_fd = os.dup(output.fileno())
    output.close()  # its descriptor number must not be closed twice later
    isolation = confine(config, conn.fileno(), output_fd)
    watch_parent(conn.fileno())
    child = Child(conn, statements, threads=config["threads"])
    child.send({"hello": isolation})
    child.serve()
