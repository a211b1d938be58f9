"""Backends: each translates one regflow problem to one library and back."""
