"""Workstation half of edgecls (needs `pip install edgecls[train]`)."""
