"""The two-layer ReLU network that a convex solution stands for (MATH.md §1, §3).

    f(x) = relu(x W1ᵀ + b1) w2,     W1: (m, d),  b1: (m,),  w2: (m,) or (m, K)

There is no output bias: the bias of the hidden layer (``b1``) plays that role through the column of
ones appended to X, exactly as in the convex program, and it is penalised like every other weight:
the non-convex objective is  loss + (alpha/2)(‖W1‖² + ‖b1‖² + ‖w2‖²).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class TwoLayerReLU:
    """A two-layer ReLU network with arrays held as NumPy float64.

    Attributes
    ----------
    W1 : (m, d) first-layer weights, one row a neuron.
    b1 : (m,) first-layer biases (zeros when the model was fitted without intercept).
    w2 : (m,) output weights for a single output, or (m, K) for K outputs.
    """

    W1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray

    def __post_init__(self) -> None:
        W1 = np.asarray(self.W1, dtype=np.float64)
        b1 = np.asarray(self.b1, dtype=np.float64)
        w2 = np.asarray(self.w2, dtype=np.float64)
        if W1.ndim != 2:
            raise ValueError(f"W1 must be 2-D (m, d), got shape {W1.shape}")
        m = W1.shape[0]
        if b1.shape != (m,):
            raise ValueError(f"b1 must have shape ({m},), got {b1.shape}")
        if w2.ndim not in (1, 2) or w2.shape[0] != m:
            raise ValueError(f"w2 must have shape ({m},) or ({m}, K), got {w2.shape}")
        for name, a in (("W1", W1), ("b1", b1), ("w2", w2)):
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{name} contains NaN or inf")
        object.__setattr__(self, "W1", W1)
        object.__setattr__(self, "b1", b1)
        object.__setattr__(self, "w2", w2)

    @property
    def width(self) -> int:
        """Number of hidden neurons m."""
        return self.W1.shape[0]

    @property
    def n_features(self) -> int:
        return self.W1.shape[1]

    @property
    def n_outputs(self) -> int:
        return 1 if self.w2.ndim == 1 else self.w2.shape[1]

    def hidden(self, X: np.ndarray) -> np.ndarray:
        """Hidden activations relu(X W1ᵀ + b1), shape (n, m)."""
        X = np.asarray(X, dtype=np.float64)
        return np.maximum(X @ self.W1.T + self.b1, 0.0)

    def forward(self, X: np.ndarray) -> np.ndarray:
        """Outputs f(X): (n,) for a single output, (n, K) otherwise."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X must have shape (n, {self.n_features}), got {X.shape}")
        return self.hidden(X) @ self.w2

    __call__ = forward

    def penalty(self) -> float:
        """Weight decay ½(‖W1‖² + ‖b1‖² + ‖w2‖²) (multiply by alpha for the objective's term)."""
        return 0.5 * float(np.sum(self.W1**2) + np.sum(self.b1**2) + np.sum(self.w2**2))

    def to_torch(self, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> torch.nn.Module:
        """The same network as ``nn.Sequential(Linear(d, m), ReLU(), Linear(m, K, bias=False))``.

        For a single output the last layer has one output unit and the module returns shape (n, 1).
        """
        d, m, k = self.n_features, self.width, self.n_outputs
        net = torch.nn.Sequential(
            torch.nn.Linear(d, m), torch.nn.ReLU(), torch.nn.Linear(m, k, bias=False)
        ).to(device=device, dtype=dtype)
        with torch.no_grad():
            net[0].weight.copy_(torch.as_tensor(self.W1))
            net[0].bias.copy_(torch.as_tensor(self.b1))
            net[2].weight.copy_(torch.as_tensor(self.w2.reshape(m, k).T))
        return net

    @classmethod
    def from_torch(cls, module: torch.nn.Module) -> TwoLayerReLU:
        """Read weights back from ``Sequential(Linear, ReLU, Linear)`` (output bias must be absent or zero).

        Exactly that structure: any other activation, or a layer before, between or after, computes a different
        function, and the network read back (and every bound certified on it) would not describe the module."""
        parts = list(module.children()) if isinstance(module, torch.nn.Sequential) else []
        kinds = (torch.nn.Linear, torch.nn.ReLU, torch.nn.Linear)
        if len(parts) != 3 or not all(type(m) is t for m, t in zip(parts, kinds, strict=True)):
            found = type(module).__name__
            if isinstance(module, torch.nn.Sequential):
                found += "(" + ", ".join(type(m).__name__ for m in parts) + ")"
            raise ValueError(f"expected a torch.nn.Sequential(Linear, ReLU, Linear), got {found}")
        first, last = parts[0], parts[2]
        if last.bias is not None and torch.any(last.bias != 0):
            raise ValueError("the output layer has a non-zero bias, which a TwoLayerReLU cannot represent")
        W1 = first.weight.detach().cpu().double().numpy()
        b1 = (
            first.bias.detach().cpu().double().numpy()
            if first.bias is not None
            else np.zeros(W1.shape[0])
        )
        w2 = last.weight.detach().cpu().double().numpy().T
        if w2.shape[1] == 1:
            w2 = w2[:, 0]
        return cls(W1=W1, b1=b1, w2=w2)


def network_from_blocks(V: np.ndarray | torch.Tensor, W: np.ndarray | torch.Tensor, intercept: bool = True,
                        rtol: float = 1e-14) -> TwoLayerReLU:
    """The two-layer ReLU network of the convex blocks (MATH.md §3).

    V, W : (P, d̃, K) blocks (d̃ = d + 1 with ``intercept``: the last coordinate is the hidden bias). Each
    non-zero block v gives a neuron u = v/√‖v‖ with output weight +√‖v‖ in the block's output column (a
    w block: −√‖w‖), so the network's penalty ½(‖u‖² + w2²) equals ‖v‖. Blocks below ``rtol`` times the
    largest block norm are rounding residue, not neurons. The zero solution gives a width-0 network.
    """
    Vn, Wn = (np.asarray(B.detach().cpu().double().numpy() if isinstance(B, torch.Tensor) else B, dtype=np.float64)
              for B in (V, W))
    K = Vn.shape[2]
    top = max(np.linalg.norm(Vn, axis=1).max(initial=0.0), np.linalg.norm(Wn, axis=1).max(initial=0.0), 1e-300)
    rows, outs = [], []
    for sign, B in ((1.0, Vn), (-1.0, Wn)):
        norms = np.linalg.norm(B, axis=1)  # (P, K)
        i_idx, k_idx = np.nonzero(norms > rtol * top)
        scale = np.sqrt(norms[i_idx, k_idx])
        rows.append(B[i_idx, :, k_idx] / scale[:, None])
        out = np.zeros((i_idx.size, K))
        out[np.arange(i_idx.size), k_idx] = sign * scale
        outs.append(out)
    U1, w2 = np.vstack(rows), np.vstack(outs)
    W1, b1 = (U1[:, :-1], U1[:, -1]) if intercept else (U1, np.zeros(U1.shape[0]))
    return TwoLayerReLU(W1=W1, b1=b1, w2=w2[:, 0] if K == 1 else w2)


def as_network(model: object) -> TwoLayerReLU:
    """Accept a :class:`TwoLayerReLU`, a fitted estimator (its ``network_``), a torch module
    ``Sequential(Linear, ReLU, Linear)``, or a tuple ``(W1, b1, w2)``."""
    if isinstance(model, TwoLayerReLU):
        return model
    net = getattr(model, "network_", None)
    if isinstance(net, TwoLayerReLU):
        return net
    if isinstance(model, torch.nn.Module):
        return TwoLayerReLU.from_torch(model)
    if isinstance(model, tuple) and len(model) == 3:
        return TwoLayerReLU(*model)
    raise TypeError(
        "expected a TwoLayerReLU, a fitted convexnn estimator, a torch Sequential(Linear, ReLU, Linear) "
        f"or a tuple (W1, b1, w2); got {type(model).__name__}"
    )
