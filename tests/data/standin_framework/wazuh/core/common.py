"""Request context, as the framework keeps it: one context variable per item."""
from contextvars import ContextVar

rbac = ContextVar('rbac', default={'rbac_mode': 'black'})
broadcast = ContextVar('broadcast', default=False)
cluster_nodes = ContextVar('cluster_nodes', default=[])
current_user = ContextVar('current_user', default='')
origin_module = ContextVar('origin_module', default='framework')
