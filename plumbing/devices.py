"""Choosing a device by name, with a clear error when CUDA is asked for and absent; waiting for
its queued work before a host clock is read."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where a device is made: a CLI's --help imports DEVICES
    import torch

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


class DeviceError(ValueError):
    """The requested device is not available here, or is not a device name."""


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cuda`` without a GPU raises DeviceError."""
    import torch

    if name not in DEVICES:
        raise DeviceError(f"unknown device {name!r}: choose one of {', '.join(DEVICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for, but no CUDA device is available here; "
                          "use --device cpu (or auto)")
    return torch.device(name)


def as_device(value: Any) -> torch.device:
    """``value`` as a ``torch.device`` (a string such as "cpu" or "cuda:0" is one); DeviceError
    naming the value otherwise."""
    import torch

    if isinstance(value, torch.device):
        return value
    if isinstance(value, str):
        try:
            return torch.device(value)
        except (RuntimeError, ValueError):
            raise DeviceError(f"device {value!r} is not a device name: use 'cpu', 'cuda' or "
                              "'cuda:N'") from None
    raise DeviceError(f"device must be a torch.device or a name such as 'cpu', got "
                      f"{type(value).__name__} {value!r}")


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so that a host clock reads finished work, not launches."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def describe(device: torch.device) -> str:
    """A human name for the device: the GPU model, or the CPU."""
    if device.type == "cuda":
        import torch

        return torch.cuda.get_device_name(device)
    return "cpu"
