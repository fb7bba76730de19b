"""Why the ``jax`` backend's Lorenz-96 gradient is several times the C yardstick's: four ways of
writing the ring tendency f_i = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F, each timed forward-only
and as ``value_and_grad`` under ``jax.jit`` (XLA CPU), with the backend's RK4 scan and
``jax.checkpoint`` step (``_jax_lorenz96.observed_trajectory``):

    python bench/jax_rhs.py [--n 40000] [--nsteps 40] [--repeats 9]

- ``pad`` (the backend's): one padded copy of x, three slices of it;
- ``roll``: three ``jnp.roll``s (three concatenates);
- ``interior``: the N - 3 interior entries from slices of x, the three ring entries apart,
  joined by one concatenate;
- ``dus``: the same interior written into the result by ``lax.dynamic_update_slice``.

A formulation that XLA fuses into vectorised loops forward (``dus``: no per-element select of
a fused concatenate) is not the one whose transpose is cheapest: the reverse sweep of ``pad`` is
pads and adds that fuse, that of ``dus`` dynamic slices and scatters of single entries.  Each
variant's J and gradient are compared with ``pad``'s (they are the same numbers to rounding);
min over repeats per variant, all in one process.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def variants(F: float) -> dict:
    def pad(x):
        p = jnp.concatenate([x[-2:], x, x[:1]])
        return (p[3:] - p[:-3]) * p[1:-2] - x + F

    def roll(x):
        return (jnp.roll(x, -1) - jnp.roll(x, 2)) * jnp.roll(x, 1) - x + F

    def ends(x):
        mid = (x[3:] - x[:-3]) * x[1:-2] - x[2:-1] + F  # i = 2 .. N-2
        f0 = (x[1] - x[-2]) * x[-1] - x[0] + F
        f1 = (x[2] - x[-1]) * x[0] - x[1] + F
        fl = (x[0] - x[-3]) * x[-2] - x[-1] + F
        return mid, f0, f1, fl

    def interior(x):
        mid, f0, f1, fl = ends(x)
        return jnp.concatenate([jnp.stack([f0, f1]), mid, fl[None]])

    def dus(x):
        mid, f0, f1, fl = ends(x)
        out = lax.dynamic_update_slice(jnp.zeros_like(x), mid, (2,))
        return out.at[0].set(f0).at[1].set(f1).at[-1].set(fl)

    return {"pad": pad, "roll": roll, "interior": interior, "dus": dus}


def cost(rhs, nsteps: int, dt: float):
    """J = 1/2 sum of the squares of every other entry at every 4th step (the standard problem's shape)."""
    def step(x):
        k1 = rhs(x)
        k2 = rhs(x + (0.5 * dt) * k1)
        k3 = rhs(x + (0.5 * dt) * k2)
        k4 = rhs(x + dt * k3)
        return x + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)

    step = jax.checkpoint(step)

    def J(x0):
        def body(x, _):
            x1 = step(x)
            return x1, x1[::2]

        _, ys = lax.scan(body, x0, None, length=nsteps)
        return 0.5 * jnp.sum(ys[3::4] ** 2)

    return J


def best_ms(f, x, repeats: int) -> float:
    jax.block_until_ready(f(x))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(x))
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40_000)
    ap.add_argument("--nsteps", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    jax.config.update("jax_enable_x64", True)
    x0 = 8.0 + np.random.default_rng(0).standard_normal(args.n)
    ref = None
    print(f"N = {args.n}, {args.nsteps} RK4 steps, float64, {jax.devices()[0].device_kind}; min of {args.repeats}")
    for name, rhs in variants(8.0).items():
        J = cost(rhs, args.nsteps, 0.05)
        vg = jax.jit(jax.value_and_grad(J))
        v = vg(x0)
        ref = v if ref is None else ref
        dJ = float(abs(v[0] - ref[0]) / abs(ref[0]))
        dg = float(jnp.max(jnp.abs(v[1] - ref[1])) / jnp.max(jnp.abs(ref[1])))
        print(f"{name:9s} forward {best_ms(jax.jit(J), x0, args.repeats):8.2f} ms   "
              f"value_and_grad {best_ms(vg, x0, args.repeats):8.2f} ms   vs pad: J {dJ:.1e}, grad {dg:.1e}")


if __name__ == "__main__":
    main()
