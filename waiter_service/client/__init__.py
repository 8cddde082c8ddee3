"""
``waiter-client``: a console client for people trying a waiter deployment.

Blocking and synchronous (zeep), so it lives apart from the server: nothing
here imports Twisted.  The pure parts (what an answer means, how a page
reads, how the bar looks, which exit code) are modules of their own and
unit-tested without a server; :mod:`.soap` is the only one that talks to
the network, and :mod:`.main` the only one that touches the terminal.
"""
