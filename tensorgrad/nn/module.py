"""Module and Parameter: the containers that hold a model's weights, buffers and submodules.

Registration is by attribute assignment, as in PyTorch: a Parameter becomes a parameter, a
Module a submodule, and `register_buffer` names a buffer. Everything that walks the tree
(named_parameters, state_dict, repr) visits the module itself first and then its children in
the order they were assigned, so names and order match PyTorch's.
"""

from __future__ import annotations

from collections import OrderedDict, namedtuple
from collections.abc import Callable, Iterator
from typing import Any

from .._capture import baked_state_changed
from .._device import Device, as_device
from .._dtype import as_dtype
from .._tensor import Tensor
from ..autograd import no_grad

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Parameter(Tensor):
    """A leaf tensor that a Module registers as a parameter, as torch.nn.Parameter. It shares
    memory with the tensor it is made from."""

    __slots__ = ()

    def __init__(self, data: Tensor | None = None, requires_grad: bool = True) -> None:
        if data is None:
            from .._creation import empty

            data = empty(0)
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter expects a Tensor, got {type(data).__name__}")
        super().__init__(data.detach(), device=data.device, requires_grad=requires_grad)

    def requires_grad_(self, requires_grad: bool = True) -> Parameter:
        changed = requires_grad != self._requires_grad
        super().requires_grad_(requires_grad)
        if changed:
            baked_state_changed()  # a captured step computes and applies this gradient or not
        return self

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of every layer and model, as torch.nn.Module."""

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no forward(); define it")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # ---- registration -----------------------------------------------------------------------
    def _registry(self, kind: str) -> Any:
        try:
            return object.__getattribute__(self, kind)
        except AttributeError:
            raise AttributeError(f"cannot assign to {type(self).__name__} before "
                                 "Module.__init__() is called; call super().__init__() first"
                                 ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        params = self._registry("_parameters")
        buffers, modules = self._buffers, self._modules
        if isinstance(value, Parameter):
            self._forget(name)
            params[name] = value
        elif isinstance(value, Module):
            self._forget(name)
            modules[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter {name!r} "
                                "(a Parameter or None is expected)")
            params[name] = None
        elif name in modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as child module "
                                f"{name!r} (a Module or None is expected)")
            modules[name] = None
        elif name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign {type(value).__name__} as buffer {name!r} "
                                "(a Tensor or None is expected)")
            buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        # Reached only when normal lookup fails: parameters, buffers and submodules.
        for kind in ("_parameters", "_buffers", "_modules"):
            registry = self.__dict__.get(kind)
            if registry is not None and name in registry:
                return registry[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for kind in ("_parameters", "_buffers", "_modules"):
            registry = self.__dict__[kind]
            if name in registry:
                del registry[name]
                self._non_persistent.discard(name)
                return
        object.__delattr__(self, name)

    def _forget(self, name: str) -> None:
        for kind in ("_parameters", "_buffers", "_modules"):
            self.__dict__[kind].pop(name, None)
        self.__dict__.pop(name, None)
        self._non_persistent.discard(name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add a parameter (or None, a declared but absent one) under `name`."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot register {type(param).__name__} as parameter {name!r} "
                            "(a Parameter or None is expected)")
        self._check_name(name)
        self._forget(name)
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Add a tensor that is state but not a parameter (running statistics), as PyTorch."""
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot register {type(tensor).__name__} as buffer {name!r} "
                            "(a Tensor or None is expected)")
        self._check_name(name)
        self._forget(name)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        """Add a child module under `name`."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module")
        self._check_name(name)
        self._forget(name)
        self._modules[name] = module

    register_module = add_module

    def _check_name(self, name: str) -> None:
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"invalid name {name!r}: a non-empty string without '.' is needed")
        self._registry("_parameters")

    # ---- walking the tree -------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """(dotted name, module) for this module and every descendant, each once, pre-order."""
        seen: set[int] = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{key}" if name else key, child)
                         for key, child in module._modules.items() if child is not None]
            stack.extend(reversed(children))

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[tuple[str, Module]]:
        seen: set[int] = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self) -> Iterator[Module]:
        for _, module in self.named_children():
            yield module

    def _named_members(self, kind: str, prefix: str, recurse: bool
                       ) -> Iterator[tuple[str, Tensor]]:
        seen: set[int] = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for module_name, module in modules:
            for name, value in module.__dict__[kind].items():
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))
                yield (f"{module_name}.{name}" if module_name else name), value

    def named_parameters(self, prefix: str = "", recurse: bool = True
                         ) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, parameter) pairs, shared parameters once, in PyTorch's order."""
        yield from self._named_members("_parameters", prefix, recurse)  # type: ignore[misc]

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix: str = "", recurse: bool = True
                      ) -> Iterator[tuple[str, Tensor]]:
        yield from self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, buf in self.named_buffers(recurse=recurse):
            yield buf

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        """Call fn on every child (recursively) and then on self, as torch.nn.Module.apply."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ---- modes and devices ------------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode on this module and every descendant."""
        if not isinstance(mode, bool):
            raise TypeError(f"train(mode) expects a bool, got {type(mode).__name__}")
        changed = False
        for module in self.modules():
            changed |= module.training != mode
            object.__setattr__(module, "training", mode)
        if changed:
            baked_state_changed()  # dropout and batch norm record either mode's work
        return self

    def eval(self) -> Module:
        """Evaluation mode (Dropout off, BatchNorm uses running statistics)."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for param in self.parameters():
            param.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop (or zero) the .grad of every parameter."""
        for param in self.parameters():
            if param.grad is None:
                continue
            if set_to_none:
                param.grad = None
            else:
                param.grad = param.grad.detach()
                param.grad.zero_()

    def to(self, *args: Any, device: Any = None, dtype: Any = None) -> Module:
        """Move parameters and buffers to a device and/or cast floating ones to a dtype (by
        keyword or positionally, a dtype also by name such as "float64"), in place: the
        Parameter objects stay the same, so an optimizer built before still works."""
        for arg in args:
            if isinstance(arg, Device) or isinstance(arg, str) and arg.partition(":")[0].strip(
                    ).lower() in ("cpu", "cuda", "auto"):
                device = arg
            else:
                try:
                    as_dtype(arg)
                except (TypeError, ValueError):
                    raise ValueError(f"Module.to: {arg!r} is neither a device (cpu, cuda, "
                                     "cuda:N, auto) nor a dtype") from None
                dtype = arg
        device = None if device is None else as_device(device)
        dtype = None if dtype is None else as_dtype(dtype)
        if dtype is not None and not dtype.is_floating_point:
            raise TypeError(f"Module.to only casts to floating dtypes, got {dtype.name}")
        with no_grad():
            for module in self.modules():
                for tensor in (*module._parameters.values(), *module._buffers.values()):
                    if tensor is not None:
                        _move(tensor, device, dtype)
                        if tensor.grad is not None:
                            _move(tensor.grad, device, dtype)
        return self

    def cpu(self) -> Module:
        return self.to(device="cpu")

    def cuda(self, index: int | None = None) -> Module:
        return self.to(device="cuda" if index is None else f"cuda:{index}")

    def float(self) -> Module:
        return self.to(dtype="float32")

    def double(self) -> Module:
        return self.to(dtype="float64")

    def half(self) -> Module:
        return self.to(dtype="float16")

    # ---- state ------------------------------------------------------------------------------
    def state_dict(self, prefix: str = "", keep_vars: bool = False) -> OrderedDict:
        """name -> Tensor for every parameter and persistent buffer, detached unless
        keep_vars, as torch.nn.Module.state_dict."""
        out: OrderedDict = OrderedDict()
        # Every path to a shared module gets its own keys, as in PyTorch: no deduplication.
        stack = [(prefix, self)]
        while stack:
            head, module = stack.pop()
            for name, param in module._parameters.items():
                if param is not None:
                    out[head + name] = param if keep_vars else param.detach()
            for name, buf in module._buffers.items():
                if buf is not None and name not in module._non_persistent:
                    out[head + name] = buf if keep_vars else buf.detach()
            stack.extend(reversed([(f"{head}{key}.", child) for key, child
                                   in module._modules.items() if child is not None]))
        return out

    def load_state_dict(self, state_dict: Any, strict: bool = True) -> IncompatibleKeys:
        """Copy values into the parameters and buffers in place. With strict=True, missing or
        unexpected keys raise; a shape mismatch always raises. Lists every problem at once."""
        own = self.state_dict(keep_vars=True)
        missing = [key for key in own if key not in state_dict]
        unexpected = [key for key in state_dict if key not in own]
        problems = []
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            shape = tuple(value.shape) if hasattr(value, "shape") else None
            if shape != target.shape:
                problems.append(f'size mismatch for {key}: copying a param with shape {shape} '
                                f'from checkpoint, the shape in current model is '
                                f'{target.shape}.')
        if strict:
            if unexpected:
                problems.insert(0, "Unexpected key(s) in state_dict: "
                                + ", ".join(f'"{k}"' for k in unexpected) + ".")
            if missing:
                problems.insert(0, "Missing key(s) in state_dict: "
                                + ", ".join(f'"{k}"' for k in missing) + ".")
        if problems:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                               + "\n\t".join(problems))
        with no_grad():
            for key, target in own.items():
                if key in state_dict:
                    value = state_dict[key]
                    target.copy_(value.detach() if isinstance(value, Tensor) else value)
        return IncompatibleKeys(missing, unexpected)

    # ---- repr -------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The text between the parentheses of this module's repr line."""
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({key}): " + _indent(repr(module), 2)
                       for key, module in self._modules.items()]
        lines = extra_lines + child_lines
        body = ""
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                body = extra_lines[0]
            else:
                body = "\n  " + "\n  ".join(lines) + "\n"
        return f"{type(self).__name__}({body})"

    def __dir__(self) -> list[str]:
        names = set(super().__dir__())
        for kind in ("_parameters", "_buffers", "_modules"):
            names.update(self.__dict__[kind])
        return sorted(names)


def _indent(text: str, spaces: int) -> str:
    first, *rest = text.split("\n")
    return "\n".join([first] + [" " * spaces + line for line in rest])


def _move(tensor: Tensor, device: Any, dtype: Any) -> None:
    """Swap tensor's array for one on `device` of `dtype` (floating tensors only), keeping
    the Python object, so references held elsewhere (optimizers) see the new array."""
    cast = dtype if dtype is not None and tensor.dtype.is_floating_point else None
    moved = tensor.detach().to(device=device, dtype=cast)
    if moved._data is not tensor._data:
        tensor._data, tensor._backend = moved._data, moved._backend
        tensor._version[0] += 1
        baked_state_changed()  # captured steps hold the array this one replaces
