"""Programs served by waiter_service, one small module each."""
