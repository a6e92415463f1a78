"""The command line: `e5ray embed|refresh|verify|gc|eval|compare|search|export|...`, its
flags (each default read from `e5ray.config`), config files, the summary and quiet logging.

The top layer: may import everything in the library; nothing imports it.
"""
