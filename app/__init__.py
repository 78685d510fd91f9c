"""convlens: interpret a convolutional network's architecture.

The import package is ``app``; the distribution is ``convlens``.
"""

__version__ = "0.1.0"
