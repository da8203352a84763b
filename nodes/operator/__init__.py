"""Operator tools that read a live network over admin RPCs: reconcile, trace, console."""
