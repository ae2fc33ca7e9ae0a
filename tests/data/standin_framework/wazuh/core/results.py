"""Framework results: a dictionary that knows how to encode itself and merge with another."""


class AbstractWazuhResult:
    def __init__(self, dikt):
        self.dikt = dikt

    def encode_json(self):
        return self.to_dict()


class WazuhResult(AbstractWazuhResult):
    def __init__(self, dikt, str_priority=None):
        super().__init__(dikt)
        self._str_priority = str_priority

    def to_dict(self):
        return {'str_priority': self._str_priority, 'result': dict(self.dikt)}

    @classmethod
    def decode_json(cls, obj):
        return cls(obj['result'], str_priority=obj['str_priority'])

    def __or__(self, other):
        merged = dict(self.dikt)
        for key, value in other.dikt.items():
            if isinstance(value, list) and isinstance(merged.get(key), list):
                merged[key] = merged[key] + value
            else:
                merged.setdefault(key, value)
        return WazuhResult(merged, self._str_priority)
