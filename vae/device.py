"""Choosing the training device, with a clear error when CUDA is asked for and absent."""

from __future__ import annotations

import torch

from vae.choices import DEVICES


class DeviceError(RuntimeError):
    """The requested device is not available here."""


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cuda`` without a GPU raises DeviceError."""
    if name not in DEVICES:
        raise DeviceError(f"unknown device {name!r}: choose one of {', '.join(DEVICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for, but no CUDA device is available here; "
                          "use --device cpu (or auto)")
    return torch.device(name)


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so a host clock reads finished work, not launches."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def describe(device: torch.device) -> str:
    """A human name for the device: the GPU model, or the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"
