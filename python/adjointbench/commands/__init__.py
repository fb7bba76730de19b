"""Sub-commands of the ``adjointbench`` CLI, one per module (see ``adjointbench.cli``)."""
