"""
XML from the network, read safely: one parser setting and one DTD check for
every place that parses a document itself (the Spyne protocol, the fast
status path, the authentication manager's answers).
"""

from __future__ import annotations

from lxml import etree

#: No entity is resolved, nothing is loaded from the network or the disk,
#: no huge trees (libxml2's limits on depth and entity amplification hold).
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def has_doctype(root: etree._Element) -> bool:
    """Whether the document of ``root`` has a DTD (SOAP 1.1 allows none)."""
    docinfo = root.getroottree().docinfo
    return bool(docinfo.doctype) or docinfo.internalDTD is not None
