"""waiter_service: long-running programs as CloudFlow asynchronous SOAP services."""

__version__ = "0.2.0"
