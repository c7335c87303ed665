"""Tasks: what the one training engine learns (see `vidrec.tasks.base` and docs/tasks.md)."""

from vidrec.tasks.base import (
    NoOptions,
    Step,
    Task,
    get_task_class,
    make_task,
    options_help,
    register_task,
    task_names,
)

__all__ = [
    "NoOptions",
    "Step",
    "Task",
    "get_task_class",
    "make_task",
    "options_help",
    "register_task",
    "task_names",
]
