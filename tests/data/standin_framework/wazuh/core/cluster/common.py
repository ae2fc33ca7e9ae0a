"""The framework's distributed-API encoder and decoder, reduced to what the tests exchange."""
import importlib
import json

from wazuh.core import exception, results


class WazuhJSONEncoder(json.JSONEncoder):
    def default(self, obj):
        if isinstance(obj, exception.WazuhException):
            return {'__wazuh_exception__': {'__class__': type(obj).__name__, '__object__': obj.to_dict()}}
        if isinstance(obj, results.AbstractWazuhResult):
            return {'__wazuh_result__': {'__class__': type(obj).__name__, '__object__': obj.encode_json()}}
        return json.JSONEncoder.default(self, obj)


def as_wazuh_object(dct):
    if '__callable__' in dct:
        encoded = dct['__callable__']
        target = importlib.import_module(encoded['__module__'])
        for part in encoded['__qualname__'].split('.'):
            target = getattr(target, part)
        return target
    if '__wazuh_result__' in dct:
        encoded = dct['__wazuh_result__']
        return getattr(results, encoded['__class__']).decode_json(encoded['__object__'])
    if '__wazuh_exception__' in dct:
        encoded = dct['__wazuh_exception__']
        return getattr(exception, encoded['__class__']).from_dict(encoded['__object__'])
    return dct
