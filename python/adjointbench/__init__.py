"""adjointbench: one 4D-Var gradient of the Lorenz (1963) model, many ways, verified and timed.

    import adjointbench as ab
    problem = ab.Lorenz63Problem.paper()
    vg = ab.backend("numpy").prepare(problem)
    J, g = vg(problem.u0)
"""

from .backends import Backend, DescentResult, Prepared, backend, names as backend_names, python_descent
from .problem import CONTROLS, Lorenz63Problem

__version__ = "0.1.0"

__all__ = [
    "CONTROLS", "Backend", "DescentResult", "Lorenz63Problem", "Prepared", "backend",
    "backend_names", "python_descent", "__version__",
]
