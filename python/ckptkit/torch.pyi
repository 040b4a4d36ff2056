from os import PathLike
from typing import IO, Any, Callable, Optional, Union

import torch

_Path = Union[str, PathLike[str]]

def load_file(filename: _Path, device: Union[str, int, torch.device] = ..., *,
              dtype: Optional[str] = ...) -> dict[str, torch.Tensor]: ...
def save_file(tensors: dict[str, torch.Tensor], filename: _Path,
              metadata: Optional[dict[str, str]] = ..., *,
              progress: Optional[Callable[[int, int], Optional[bool]]] = ...) -> None: ...
def save(tensors: dict[str, torch.Tensor], metadata: Optional[dict[str, str]] = ...) -> bytes: ...
def save_model(model: torch.nn.Module, filename: _Path, metadata: Optional[dict[str, str]] = ...,
               force_contiguous: bool = ...) -> None: ...
def load_model(model: torch.nn.Module, filename: _Path, strict: bool = ...,
               device: Union[str, int, torch.device] = ...) -> tuple[list[str], list[str]]: ...
def load(f: Union[_Path, bytes, bytearray, memoryview, IO[bytes]], map_location: Any = ...,
         allow_unsafe: bool = ..., **_ignored: Any) -> Any: ...
torch_load = load
