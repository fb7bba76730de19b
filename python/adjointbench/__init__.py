"""adjointbench: the 4D-Var gradient of Lorenz (1963) and Lorenz (1996), many ways, verified and timed.

    import adjointbench as ab
    problem = ab.Lorenz63Problem.paper()
    vg = ab.backend("numpy").prepare(problem)
    J, g = vg(problem.u0)
"""

from .backends import Backend, DescentResult, Prepared, backend, python_descent
from .backends import names as backend_names
from .models import MODELS, Lorenz96Problem, MemoryBudgetError, load_problem, problem_from_dict, problem_from_json
from .problem import CONTROLS, Lorenz63Problem

__version__ = "0.1.0"

__all__ = [
    "CONTROLS", "MODELS", "Backend", "DescentResult", "Lorenz63Problem", "Lorenz96Problem", "MemoryBudgetError", "Prepared",
    "backend", "backend_names", "load_problem", "problem_from_dict", "problem_from_json", "python_descent",
    "__version__",
]
