"""The toolbox plugins may import: shared pieces of training procedures (see each module).

Plugins import helpers from here, never from each other.
"""
