"""The mathematics of MATH.md as small pure functions over tensors.

- :mod:`convexnn.ops.patterns`    activation patterns D_i from gate vectors, exact enumeration (§2)
- :mod:`convexnn.ops.operators`   the pattern operators F, Fᵀ, G, Gᵀ and group norms (§3, §6)
- :mod:`convexnn.ops.losses`      losses, gradients, per-sample prox and Fenchel conjugates (§5)
- :mod:`convexnn.ops.certificates` duality certificates for (G) and (C) (§8)
"""
