"""The functions the framework executor's test calls."""
import os
import time

from wazuh.core import common
from wazuh.core.results import WazuhResult


def get_status():
    """Which helper ran the request, and the RBAC context it ran with."""
    return WazuhResult({'data': {'pid': os.getpid(), 'rbac': common.rbac.get(),
                                 'user': common.current_user.get()}})


def slow(seconds, pid_file=None):
    """Sleeps; says when it started and ended, in which helper."""
    if pid_file:
        with open(pid_file, 'w') as f:
            f.write(str(os.getpid()))
    started = time.time()
    time.sleep(seconds)
    return {'started': started, 'ended': time.time(), 'pid': os.getpid()}


def crash(pid_file):
    """Kills its own process, as a framework function that segfaults would."""
    with open(pid_file, 'w') as f:
        f.write(str(os.getpid()))
    os._exit(3)
