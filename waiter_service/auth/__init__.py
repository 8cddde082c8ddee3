"""
Who may do what: session tokens checked against the platform's
authentication manager (:mod:`.checker`), through a small non-blocking
SOAP client (:mod:`.wsdl` to read its WSDL, :mod:`.client` to call it).
"""
