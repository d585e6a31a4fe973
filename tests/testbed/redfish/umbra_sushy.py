"""sushy-emulator (sushy-tools 2.2.0, fake driver) plus a Redfish SessionService.

The stock emulator only does HTTP Basic auth. Real BMCs (iDRAC, iLO, XCC,
OpenBMC) also offer sessions (DSP0266 "Session management"), which the
coordinator's Redfish client uses when `auth = "session"`. This wrapper runs
the unmodified emulator app and puts in front of its Basic-auth middleware:

  POST   /redfish/v1/SessionService/Sessions  {"UserName", "Password"}
         -> 201, X-Auth-Token and Location headers, the Session resource
  GET    /redfish/v1/SessionService[/Sessions[/<id>]]
  DELETE /redfish/v1/SessionService/Sessions/<id>   -> 204
  any request with a valid X-Auth-Token is passed on as its user;
  an unknown token gets 401.
Test control (not Redfish): GET /_test/sessions -> {"open": n, "created": n}

Usage: python umbra_sushy.py --config emulator.conf   (sushy-emulator's args)
"""
import base64
import json
import secrets
import threading

from sushy_tools.emulator import auth_basic, main as sm

LOCK = threading.Lock()
SESSIONS = {}  # id -> {"token", "user", "password"}
CREATED = [0]
BASE = '/redfish/v1/SessionService'


def reply(start_response, status, body=None, headers=()):
    data = b'' if body is None else json.dumps(body).encode()
    hl = [('Content-Type', 'application/json'), ('Content-Length', str(len(data)))]
    start_response(status, hl + list(headers))
    return [data]


def unauthorized(start_response, msg):
    return reply(start_response, '401 Unauthorized',
                 {'error': {'code': 'Base.1.0.GeneralError', 'message': msg}})


def session_res(sid, s):
    return {'@odata.type': '#Session.v1_3_0.Session', '@odata.id': f'{BASE}/Sessions/{sid}',
            'Id': sid, 'Name': 'User Session', 'UserName': s['user']}


class SessionMiddleware:
    def __init__(self, app, auth_file):
        self.app = app
        self.auth_file = auth_file

    def by_token(self, token):
        with LOCK:
            for sid, s in SESSIONS.items():
                if secrets.compare_digest(s['token'], token):
                    return sid, s
        return None, None

    def __call__(self, env, start_response):
        path = env.get('PATH_INFO', '').rstrip('/')
        method = env['REQUEST_METHOD']
        if path == '/_test/sessions':
            with LOCK:
                return reply(start_response, '200 OK', {'open': len(SESSIONS), 'created': CREATED[0]})
        if path == f'{BASE}/Sessions' and method == 'POST':
            try:
                n = int(env.get('CONTENT_LENGTH') or 0)
                body = json.loads(env['wsgi.input'].read(n) or b'{}')
                user, pw = body['UserName'], body['Password']
                auth_basic.authenticate(self.auth_file, user, pw.encode())
            except Exception as e:  # bad JSON, missing fields, wrong credentials
                return unauthorized(start_response, f'login refused: {e}')
            with LOCK:
                CREATED[0] += 1
                sid = str(CREATED[0])
                SESSIONS[sid] = {'token': secrets.token_hex(16), 'user': user, 'password': pw}
                s = SESSIONS[sid]
            return reply(start_response, '201 Created', session_res(sid, s),
                         [('X-Auth-Token', s['token']), ('Location', f'{BASE}/Sessions/{sid}')])

        token = env.get('HTTP_X_AUTH_TOKEN')
        sid, s = (None, None)
        if token is not None:
            sid, s = self.by_token(token)
            if s is None:
                return unauthorized(start_response, 'unknown or deleted session token')
            cred = base64.b64encode(f"{s['user']}:{s['password']}".encode()).decode()
            env['HTTP_AUTHORIZATION'] = f'Basic {cred}'

        if path.startswith(BASE):
            # The SessionService itself: authenticated like everything else.
            if s is None:
                try:
                    user, pw = auth_basic.parse_token(auth_basic.parse_header(env))
                    auth_basic.authenticate(self.auth_file, user, pw)
                except Exception as e:
                    return unauthorized(start_response, str(e))
            if path == BASE:
                return reply(start_response, '200 OK', {
                    '@odata.type': '#SessionService.v1_1_8.SessionService', '@odata.id': BASE,
                    'Id': 'SessionService', 'ServiceEnabled': True, 'SessionTimeout': 600,
                    'Sessions': {'@odata.id': f'{BASE}/Sessions'}})
            if path == f'{BASE}/Sessions':
                with LOCK:
                    members = [{'@odata.id': f'{BASE}/Sessions/{i}'} for i in SESSIONS]
                return reply(start_response, '200 OK', {
                    '@odata.id': f'{BASE}/Sessions', 'Members': members,
                    'Members@odata.count': len(members)})
            target = path[len(f'{BASE}/Sessions/'):]
            with LOCK:
                found = SESSIONS.get(target)
                if found is not None and method == 'DELETE':
                    del SESSIONS[target]
            if found is None:
                return reply(start_response, '404 Not Found',
                             {'error': {'code': 'Base.1.0.ResourceMissingAtURI', 'message': path}})
            if method == 'DELETE':
                return reply(start_response, '204 No Content')
            return reply(start_response, '200 OK', session_res(target, found))
        return self.app(env, start_response)


_configure = sm.Application.configure


def configure(self, config_file=None, extra_config=None):
    _configure(self, config_file, extra_config)
    auth_file = self.config.get('SUSHY_EMULATOR_AUTH_FILE')
    if auth_file and not isinstance(self.wsgi_app, SessionMiddleware):
        self.wsgi_app = SessionMiddleware(self.wsgi_app, auth_file)


sm.Application.configure = configure

if __name__ == '__main__':
    sm.main()
