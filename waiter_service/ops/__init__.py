"""
The operators' side of the service: ``<context-root>/health`` (is it
serving, can it write its work folder), ``<context-root>/metrics``
(Prometheus) and the log's format and level.  Nothing here changes how a
SOAP call is answered; it only looks at the run manager and counts.
"""
