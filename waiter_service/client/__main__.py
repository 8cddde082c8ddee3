"""``python -m waiter_service.client``: the same as ``waiter-client``."""

from .main import main

raise SystemExit(main())
