"""
The SOAP face of the service: where a call enters (:mod:`.operations`), the
Twisted resource that serves it (:mod:`.resource`) and the web site around
it (:mod:`.site`).  Spyne is always imported through
:mod:`waiter_service.spyne_compat`.
"""
