"""``python -m adjointbench.report``: print this machine's context as JSON."""

import json

from .context import machine_context

print(json.dumps(machine_context(), indent=1))
