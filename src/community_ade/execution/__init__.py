"""Execution: turning an approved task into the change it previewed.

``executors`` holds the per-task-type plugins (validate and plan a change now; apply and
roll it back once approved). The queue and the worker that drive them live beside it.
"""
