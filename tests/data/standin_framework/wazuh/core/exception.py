"""Framework errors: a code, a title and an optional extra message."""

TITLES = {1000: 'Wazuh Internal Error', 3021: 'Timeout executing API request'}


class WazuhException(Exception):
    def __init__(self, code, extra_message=None):
        super().__init__(code, extra_message)
        self.code = code
        self.extra_message = extra_message

    def to_dict(self):
        return {'type': 'about:blank', 'title': TITLES.get(self.code, 'Error'), 'code': self.code,
                'extra_message': self.extra_message, 'extra_remediation': None, 'cmd_error': False,
                'dapi_errors': {}}

    @classmethod
    def from_dict(cls, dct):
        return cls(dct['code'], dct.get('extra_message'))


class WazuhError(WazuhException):
    pass


class WazuhInternalError(WazuhException):
    pass
