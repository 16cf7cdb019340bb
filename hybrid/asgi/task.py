"""The request's Task: a real asyncio Task whose first step runs at once and whose every step is timed.

It is compiled (hybrid/_speedups/task.pyx, where the why is told): this module names it for the rest of the
Python layer.
"""

from hybrid._speedups.task import BLOCKED_STEP, RequestTask, child_task_factory, start_request_task

__all__ = ["BLOCKED_STEP", "RequestTask", "child_task_factory", "start_request_task"]
