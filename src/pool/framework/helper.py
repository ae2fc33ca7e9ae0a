# clusterd framework helper: runs distributed-API requests in the Wazuh framework's own Python.
#
# The daemon starts a few of these and writes one JSON line per request on stdin:
#   {"op": "run", "request": "<request JSON>"} or {"op": "merge", "parts": ["<answer JSON>", ...]}
# and reads one JSON line per answer on stdout: {"ok": "<encoded answer>"} or {"error": "<text>"}.
# The daemon has already checked the request against its allow-list and refused every payload that
# decodes into code or exception objects; the framework's decoder then checks again that the
# function is one the framework exposes to the distributed API.
import asyncio
import json
import os
import resource
import sys


def main():
    memory_limit, framework_dir = int(sys.argv[1]), sys.argv[2]
    if memory_limit > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    sys.path.insert(0, framework_dir)
    channel = sys.stdout
    # Whatever a framework function prints goes to stderr, never into the answers.
    sys.stdout = sys.stderr
    from wazuh.core.cluster.common import WazuhJSONEncoder, as_wazuh_object
    from wazuh.core import common, exception
    from wazuh.core import results

    def run(text):
        request = json.loads(text, object_hook=as_wazuh_object)
        function = request['f']
        kwargs = dict(request.get('f_kwargs') or {})
        if kwargs.get('agent_list') == '*':
            del kwargs['agent_list']
        local_client_arg = request.get('local_client_arg')
        if local_client_arg:
            from wazuh.core.cluster.local_client import LocalClient
            kwargs[local_client_arg] = LocalClient()
        context = [('rbac', request.get('rbac_permissions') or {'rbac_mode': 'black'}),
                   ('broadcast', bool(request.get('broadcasting'))),
                   ('cluster_nodes', request.get('nodes') or []),
                   ('current_user', request.get('current_user') or ''),
                   ('origin_module', 'API')]
        for name, value in context:
            variable = getattr(common, name, None)
            if variable is not None:
                variable.set(value)
        try:
            data = function(**kwargs)
            if asyncio.iscoroutine(data):
                data = asyncio.run(data)
        except exception.WazuhException as error:
            data = error
        except Exception as error:
            data = exception.WazuhInternalError(1000, extra_message=f'{type(error).__name__}: {error}')
        if not isinstance(data, (results.AbstractWazuhResult, exception.WazuhException)):
            data = results.WazuhResult(data if isinstance(data, dict) else {'message': data})
        return json.dumps(data, cls=WazuhJSONEncoder)

    def merge(parts):
        decoded = [json.loads(part, object_hook=as_wazuh_object) for part in parts]
        merged = decoded[0]
        for other in decoded[1:]:
            merged = merged | other
        return json.dumps(merged, cls=WazuhJSONEncoder)

    for line in sys.stdin:
        try:
            message = json.loads(line)
            if message.get('op') == 'run':
                reply = {'ok': run(message['request'])}
            elif message.get('op') == 'merge':
                reply = {'ok': merge(message['parts'])}
            else:
                reply = {'error': f"unknown operation {message.get('op')!r}"}
        except MemoryError:
            reply = {'error': 'the framework helper ran out of memory'}
        except Exception as error:
            reply = {'error': f'{type(error).__name__}: {error}'}
        channel.write(json.dumps(reply) + '\n')
        channel.flush()


if __name__ == '__main__':
    os.environ.setdefault('PYTHONDONTWRITEBYTECODE', '1')
    main()
