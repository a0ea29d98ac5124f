#!/usr/bin/env python3
"""t/services/check-services.py [STATE_DIR] -- the probe phase of scripts/test: before
pytest runs, every external tool and service the tests use must *work*, not merely be
installed: one real round trip with every component that t/services/start-services.sh
started, and every program of t/tools.py TOOLS (fortune prints a cookie, Perl qpsmtpd
answers a session, swaks, msmtp, cdb, openssl, systemd-analyze, smtp-sink, nmap with its
smtp-open-relay script, testssl.sh, exim when the exim component ran).  A failure names what to install.  Not a test of qpsmtpd_py.

STATE_DIR defaults to $QPT_STATE_DIR, then /tmp/qpt-state.  Needs the [test] extra of
pyproject.toml (checked first).  Run as root (PAM pam_unix and checkpw need it).  Prints one
line per check and 'N passed, N failed' at the end; exit 1 on a failure."""
import base64, imaplib, importlib, os, smtplib, socket, struct, subprocess, sys, time, glob

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # t/: tools.py
import tools  # noqa: E402

STATE = sys.argv[1] if len(sys.argv) > 1 else os.environ.get('QPT_STATE_DIR', '/tmp/qpt-state')
E = dict(l.strip().split('=', 1) for l in open(f'{STATE}/services.env') if '=' in l and not l.startswith('#'))
for k, v in E.items():  # the tool probes see what pytest will see (scripts/test exports services.env)
    os.environ.setdefault(k, v)
results = []
fixes = []


def check(name, fix):
    """Run the decorated function now; `fix` says what to install when it fails."""
    def deco(fn):
        t = time.time()
        try:
            detail = fn()
            results.append(True); print(f'PASS {name} ({time.time() - t:.2f}s) {detail or ""}')
        except Exception as e:  # noqa
            results.append(False); fixes.append(fix)
            print(f'FAIL {name}: {type(e).__name__}: {e}\n     fix: {fix}')
        return fn
    return deco


# ---------------------------------------------------------------- Python packages
# module -> pip package; dns.nameserver is what dnspython < 2.4 lacks (Debian 12 has 2.3)
MODULES = {'dns.nameserver': 'dnspython>=2.4', 'spf': 'pyspf', 'dkim': 'dkimpy', 'ldap3': 'ldap3',
           'pymysql': 'pymysql', 'pam': 'python-pam', 'lmdb': 'lmdb', 'idna': 'idna',
           'cryptography': 'cryptography', 'daemon': 'python-daemon', 'setproctitle': 'setproctitle',
           'maxminddb': 'maxminddb', 'geoip2': 'geoip2', 'miltertest': 'miltertest',
           'mmdb_writer': 'mmdb-writer', 'aiosmtplib': 'aiosmtplib', 'hypothesis': 'hypothesis',
           'redis': 'redis', 'authres': 'authres', 'publicsuffixlist': 'publicsuffixlist',
           'PIL.Image': 'Pillow',
           'pytest': 'pytest'}
missing = []
for module, pip_name in MODULES.items():
    try:
        importlib.import_module(module)
    except ImportError as e:
        missing.append(f'{pip_name} ({module}: {e})')
if missing:
    print(f"FAIL python packages: {'; '.join(missing)}\n"
          f"     fix: {sys.executable} -m pip install -e '.[test]' (pyproject.toml)")
    sys.exit(1)
print(f'PASS python packages: {len(MODULES)} modules import')


# ---------------------------------------------------------------- DNS
import dns.resolver, dns.reversename  # noqa: E402
R = dns.resolver.Resolver(configure=False)  # never read /etc/resolv.conf
R.nameservers = [E['QPT_DNS_HOST']]; R.port = int(E['QPT_DNS_PORT']); R.lifetime = 3


def q(name, t):
    try:
        return sorted(x.to_text() for x in R.resolve(name, t))
    except dns.resolver.NXDOMAIN:
        return 'NXDOMAIN'


@check('dns: nsd answers dnsbl/rhsbl/dnswl/MX/PTR/TXT', f'apt-get install nsd (log: {STATE}/dns/nsd.log)')
def _():
    assert q('2.0.0.127.dnsbl.test', 'A') == ['127.0.0.2']
    assert 'listed' in q('2.0.0.127.dnsbl.test', 'TXT')[0]
    assert q('1.0.0.127.dnsbl.test', 'A') == 'NXDOMAIN'
    assert q('spam.test.rhsbl.test', 'A') == ['127.0.0.2']
    assert q('2.0.0.127.dnswl.test', 'A') == ['127.0.10.0']
    assert q('example.test', 'MX') == ['10 mx.example.test.']
    assert q(dns.reversename.from_address('127.0.0.1'), 'PTR') == ['mx.example.test.']
    assert q(dns.reversename.from_address('127.0.0.4'), 'PTR') == 'NXDOMAIN'
    assert q('sel._domainkey.example.test', 'TXT')[0].startswith('"v=DKIM1')
    # the sender-authentication zones (t/test_spf.py, test_dkim.py, test_dmarc.py ...)
    assert q('s1._domainkey.auth.test', 'TXT')[0].startswith('"v=DKIM1')
    assert q('_dmarc.auth.test', 'TXT')[0].startswith('"v=DMARC1')
    assert q('nopolicy.test', 'TXT') == ['"v=spf1 ip4:192.0.2.10 -all"']
    assert q('e1.example.com.s6.rfc7208.test', 'TXT') == ['"v=spf1 a/0 -all"']
    # the DNS list zones (t/test_dnsbl.py, test_fcrdns.py, test_resolvable_fromhost.py, test_uribl.py)
    assert q('nullmx.dnscheck.test', 'MX') == ['0 .']
    assert q(dns.reversename.from_address('127.0.0.6'), 'PTR') == ['fail6.dnscheck.test.']
    assert q('spam-site.test.uribl.test', 'A') == ['127.0.0.2']


@check('dns: pyspf through the test server', 'pip package pyspf')
def _():
    import spf, warnings
    warnings.simplefilter('ignore', DeprecationWarning)  # pyspf calls dns.resolver.query()
    dns.resolver.default_resolver = R                   # pyspf uses the module default resolver
    got = {(i, s): spf.check2(i=i, s=s, h='helo.example.test')[0] for i, s in [
        ('127.0.0.1', 'a@example.test'), ('127.0.0.5', 'a@example.test'),
        ('127.0.0.5', 'a@softfail.example.test'), ('127.0.0.1', 'a@incl.example.test'),
        ('127.0.0.1', 'a@neutral.example.test'), ('127.0.0.1', 'a@none.example.test')]}
    assert list(got.values()) == ['pass', 'fail', 'softfail', 'pass', 'neutral', 'none'], got
    return got


@check('dns: dkimpy sign + verify with the key in DNS', 'pip package dkimpy')
def _():
    import dkim
    key = open(E['QPT_DKIM_KEY'], 'rb').read()
    msg = b'From: a@example.test\r\nTo: b@example.test\r\nSubject: hi\r\n\r\nbody\r\n'
    sig = dkim.sign(msg, b'sel', b'example.test', key, include_headers=[b'from', b'to', b'subject'])

    def dnsfunc(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        return b''.join(b''.join(r.strings) for r in R.resolve(name, 'TXT'))
    assert dkim.verify(sig + msg, dnsfunc=dnsfunc)
    assert not dkim.verify(sig + msg.replace(b'body', b'b0dy'), dnsfunc=dnsfunc)


# ---------------------------------------------------------------- spamd
GTUBE = (b'From: s@example.test\r\nTo: r@example.test\r\nSubject: gtube\r\nMessage-ID: <g@example.test>\r\n\r\n'
         b'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n')
HAM = b'From: s@example.test\r\nTo: r@example.test\r\nSubject: lunch\r\n\r\nLunch tomorrow?\r\n'


def spamd(cmd, msg, addr):
    fam = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
    with socket.socket(fam) as s:
        s.settimeout(60); s.connect(addr)
        s.sendall(f'{cmd} SPAMC/1.5\r\nContent-length: {len(msg)}\r\nUser: qpsmtpd\r\n\r\n'.encode() + msg)
        s.shutdown(socket.SHUT_WR)
        buf = b''
        while c := s.recv(65536):
            buf += c
    head, _, body = buf.partition(b'\r\n\r\n')
    return head.decode(), body.decode()


@check('spamd: PING/PONG, GTUBE/ham over TCP and unix socket, spamc',
       f'apt-get install spamassassin spamd spamc (log: {STATE}/spamd/spamd.log)')
def _():
    with socket.create_connection((E['QPT_SPAMD_HOST'], int(E['QPT_SPAMD_PORT'])), timeout=10) as s:
        s.sendall(b'PING SPAMC/1.5\r\n\r\n')
        pong = s.makefile('rb').readline()
    assert pong.startswith(b'SPAMD/') and b'PONG' in pong, pong
    h, b = spamd('SYMBOLS', GTUBE, (E['QPT_SPAMD_HOST'], int(E['QPT_SPAMD_PORT'])))
    score = float(h.split('Spam: True ; ')[1].split(' /')[0]) if 'Spam: True ; ' in h else 0
    assert h.startswith('SPAMD/1.') and score >= 1000 and 'GTUBE' in b, (h, b)
    h2, _ = spamd('CHECK', HAM, E['QPT_SPAMD_SOCKET'])
    assert 'Spam: False' in h2, h2
    r = subprocess.run(['spamc', '-d', E['QPT_SPAMD_HOST'], '-p', E['QPT_SPAMD_PORT'], '-c'], input=GTUBE, capture_output=True)
    return f"{h.splitlines()[-1]} | spamc -c: {r.stdout.decode().strip()} rc={r.returncode}"


# ---------------------------------------------------------------- clamd
EICAR = rb'X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'


def instream(data, addr):
    fam = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
    with socket.socket(fam) as s:
        s.settimeout(30); s.connect(addr)
        s.sendall(b'zINSTREAM\0' + struct.pack('!L', len(data)) + data + struct.pack('!L', 0))
        buf = b''
        while not buf.endswith(b'\0'):
            c = s.recv(4096)
            if not c:
                break
            buf += c
    return buf.rstrip(b'\0').decode()


@check('clamd: PING/PONG, EICAR by INSTREAM tcp+unix, MIME attachment, clamdscan, clamscan',
       f'apt-get install clamav clamav-daemon clamdscan (log: {STATE}/clamav/clamd.log)')
def _():
    tcp = (E['QPT_CLAMD_HOST'], int(E['QPT_CLAMD_PORT']))
    with socket.create_connection(tcp, timeout=10) as s:
        s.sendall(b'zPING\0')
        assert s.recv(64) == b'PONG\0'
    assert instream(EICAR, tcp) == 'stream: Local.Test.EICAR-NDB.UNOFFICIAL FOUND'
    assert instream(EICAR, E['QPT_CLAMD_SOCKET']).endswith('FOUND')
    assert instream(b'clean text\n' * 100, tcp) == 'stream: OK'
    mail = (b'From: a@example.test\r\nSubject: v\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="X"\r\n\r\n'
            b'--X\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            + base64.encodebytes(EICAR) + b'--X--\r\n')
    assert instream(mail, tcp).endswith('FOUND')
    f = f"{E['QPT_STATE']}/clamav/eicar.com"
    r1 = subprocess.run(['clamdscan', '-c', E['QPT_CLAMD_CONF'], '--no-summary', f], capture_output=True, text=True)
    r2 = subprocess.run(['clamscan', '--no-summary', f'--database={E["QPT_CLAMAV_DB"]}', f], capture_output=True, text=True)
    assert r1.returncode == 1 and 'FOUND' in r1.stdout and r2.returncode == 1 and 'FOUND' in r2.stdout, (r1, r2)
    return r1.stdout.strip()


# ---------------------------------------------------------------- ldap
@check('ldap: ldap3 search + simple binds, ldapwhoami', 'apt-get install slapd ldap-utils')
def _():
    from ldap3 import Server, Connection, SUBTREE
    host, port = E['QPT_LDAP_URI'].rsplit(':', 1)
    srv = Server(host.split('//')[1], port=int(port), get_info=None)
    c = Connection(srv, auto_bind=True)
    c.search(E['QPT_LDAP_BASE'], '(mail=alice@example.test)', SUBTREE, attributes=['uid'])
    dn = c.entries[0].entry_dn
    assert Connection(srv, user=dn, password=E['QPT_LDAP_USER_PW']).bind()
    assert not Connection(srv, user=dn, password='wrong').bind()
    assert Connection(srv, user='uid=bob,ou=people,dc=example,dc=test', password='bobpw').bind()
    r = subprocess.run(['ldapwhoami', '-x', '-H', E['QPT_LDAP_URI'], '-D', dn, '-w', E['QPT_LDAP_USER_PW']],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


# ---------------------------------------------------------------- imap
@check('imap: dovecot greeting, login/append/select, bad password refused',
       f'apt-get install dovecot-imapd (log: {STATE}/dovecot/dovecot.log)')
def _():
    m = imaplib.IMAP4(E['QPT_IMAP_HOST'], int(E['QPT_IMAP_PORT']))
    assert m.welcome.startswith(b'* OK'), m.welcome
    assert m.login(E['QPT_IMAP_USER'], E['QPT_IMAP_PW'])[0] == 'OK'
    m.append('INBOX', None, None, b'From: x@example.test\r\nSubject: t\r\n\r\nhi\r\n')
    n = m.select('INBOX')[1][0]; m.logout()
    m = imaplib.IMAP4(E['QPT_IMAP_HOST'], int(E['QPT_IMAP_PORT']))
    try:
        m.login(E['QPT_IMAP_USER'], 'wrong'); raise AssertionError('bad password accepted')
    except imaplib.IMAP4.error:
        pass
    return f'INBOX has {n.decode()} message(s)'


# ---------------------------------------------------------------- lmtp
@check('lmtp: dovecot LMTP on tcp + unix socket delivers, unknown user refused at RCPT',
       f'apt-get install dovecot-lmtpd (log: {STATE}/lmtp/dovecot.log)')
def _():
    for target in ((E['QPT_LMTP_HOST'], int(E['QPT_LMTP_PORT'])), E['QPT_LMTP_SOCKET']):
        fam = socket.AF_UNIX if isinstance(target, str) else socket.AF_INET
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.settimeout(10); s.connect(target); f = s.makefile('rb')
            def reply():
                while True:
                    line = f.readline()
                    if line[3:4] != b'-':
                        return line
            assert reply().startswith(b'220'), 'no greeting'
            for cmd, want in ((b'LHLO probe.example.test', b'250'), (b'MAIL FROM:<probe@example.test>', b'250'),
                              (b'RCPT TO:<nobody@example.test>', b'550'), (b'RCPT TO:<bob@example.test>', b'250'),
                              (b'DATA', b'354'), (b'Subject: probe\r\n\r\nprobe\r\n.', b'250'), (b'QUIT', b'221')):
                s.sendall(cmd + b'\r\n'); line = reply()
                assert line.startswith(want), (cmd, line)
    return 'delivered to bob over tcp and socket'


# ---------------------------------------------------------------- mysql
@check('mysql: pymysql tcp + unix socket, vpopmail row',
       f'apt-get install mariadb-server (log: {STATE}/mysql/mysqld.err)')
def _():
    import pymysql, warnings
    warnings.simplefilter('ignore', DeprecationWarning)
    try:
        import crypt            # deprecated in 3.11, removed in 3.13
    except ImportError:
        import crypt_r as crypt  # PyPI crypt-r: the same module
    out = []
    for kw in ({'host': E['QPT_MYSQL_HOST'], 'port': int(E['QPT_MYSQL_PORT'])}, {'unix_socket': E['QPT_MYSQL_SOCKET']}):
        c = pymysql.connect(user=E['QPT_MYSQL_USER'], password=E['QPT_MYSQL_PW'], database=E['QPT_MYSQL_DB'], **kw)
        with c.cursor() as cur:
            cur.execute('SELECT pw_passwd, pw_clear_passwd FROM vpopmail WHERE pw_name=%s AND pw_domain=%s',
                        ('alice', 'example.test'))
            h, clear = cur.fetchone()
        c.close()
        assert clear == 'alicepw' and crypt.crypt('alicepw', h) == h
        out.append(h)
    return out[0]


# ---------------------------------------------------------------- pam
@check('pam: python-pam pam_unix (system user) + pam_pwdfile',
       'apt-get install libpam-pwdfile; run as root (pam_unix reads /etc/shadow)')
def _():
    import pam
    p = pam.pam()
    assert p.authenticate(E['QPT_TEST_USER'], E['QPT_TEST_PASS'], service=E['QPT_PAM_SERVICE']), p.reason
    assert not p.authenticate(E['QPT_TEST_USER'], 'wrong', service=E['QPT_PAM_SERVICE'])
    assert p.authenticate('carol', 'carolpw', service=E['QPT_PAM_PWDFILE_SERVICE']), p.reason
    assert not p.authenticate('carol', 'x', service=E['QPT_PAM_PWDFILE_SERVICE'])
    return f'uid={os.getuid()}'


# ---------------------------------------------------------------- checkpassword
def checkpassword(user, pw):
    """Exit status of checkpw reading user\0pw\0stamp\0 on fd 3 (the shell puts it there:
    a pass_fds/dup2 dance only works when the pipe happens to be fd 3 already)."""
    return subprocess.run(['sh', '-c', 'exec "$0" /bin/true 3<&0', E['QPT_CHECKPW']],
                          input=f'{user}\0{pw}\0Y123456\0'.encode(), timeout=10).returncode


@check('checkpw: checkpassword protocol on fd 3', 'apt-get install checkpw; run as root')
def _():
    assert checkpassword(E['QPT_TEST_USER'], E['QPT_TEST_PASS']) == 0, 'right password refused'
    assert checkpassword(E['QPT_TEST_USER'], 'wrong') == 1, 'wrong password not refused with 1'


# ---------------------------------------------------------------- milter
@check('milter: opendkim signs (internal) and verifies (external) via miltertest',
       f'apt-get install opendkim opendkim-tools (log: {STATE}/opendkim/opendkim.out)')
def _():
    from miltertest import MilterConnection, constants as C

    def run(headers, body, ip):
        s = socket.create_connection((E['QPT_MILTER_HOST'], int(E['QPT_MILTER_PORT'])), timeout=20)
        m = MilterConnection(s)
        act, prot = m.optneg_mta()
        m.send_macro(C.SMFIC_CONNECT, j='mx.example.test')
        m.send_ar(C.SMFIC_CONNECT, hostname='client.example.test', family=C.SMFIA_INET, port=25000, address=ip)
        m.send_ar(C.SMFIC_HELO, helo='client.example.test')
        m.send_macro(C.SMFIC_MAIL, i='QID1')
        m.send_ar(C.SMFIC_MAIL, args=['<a@example.test>'])
        m.send_ar(C.SMFIC_RCPT, args=['<b@example.test>'])
        if not prot & C.SMFIP_NODATA:
            m.send_ar(C.SMFIC_DATA)
        m.send_headers(headers); m.send_ar(C.SMFIC_EOH); m.send_body(body)
        res = m.send_eom(); m._send(C.SMFIC_QUIT); s.close()
        return res
    hdrs = [('From', 'a@example.test'), ('To', 'b@example.test'), ('Subject', 'm'),
            ('Date', 'Tue, 24 Nov 2026 01:00:00 +0000'), ('Message-ID', '<m1@example.test>')]
    res = run(hdrs, 'Hello.\r\n', '127.0.0.1')
    sig = [r[1]['value'] for r in res if r[0] in ('i', 'h') and r[1]['name'] == 'DKIM-Signature'][0]
    ver = run([('DKIM-Signature', sig)] + hdrs, 'Hello.\r\n', '127.0.0.5')
    ar = [r[1]['value'] for r in ver if r[0] in ('i', 'h') and r[1]['name'] == 'Authentication-Results'][0]
    assert 'dkim=pass' in ar, ar
    bad = run([('DKIM-Signature', sig)] + hdrs, 'Jello.\r\n', '127.0.0.5')
    assert bad[-1][0] == 'y' and bad[-1][1]['smtpcode'] == '550', bad
    return ar.split(';')[1].strip()[:40]


# ---------------------------------------------------------------- sink + postfix
def send_and_find(host, port, what):
    """Send one message to host:port (greeting must be 220); return the sink file that has it."""
    tag = f'{what}-{time.time()}'
    with smtplib.SMTP(timeout=10) as s:
        code, greeting = s.connect(host, int(port))
        assert code == 220, (code, greeting)
        s.sendmail('a@example.test', ['b@remote.test'], f'Subject: {tag}\r\n\r\n{what}\r\n'.encode())
    for _ in range(50):
        for f in glob.glob(E['QPT_SINK_DIR'] + '/*'):
            if tag in open(f, errors='replace').read():
                return f
        time.sleep(0.1)
    raise AssertionError(f'the message did not reach {E["QPT_SINK_DIR"]}')


@check('sink: smtp-sink greets 220, keeps the message in a file',
       f'apt-get install postfix (smtp-sink; log: {STATE}/sink/sink.log)')
def _():
    return send_and_find(E['QPT_SINK_HOST'], E['QPT_SINK_PORT'], 'sink')


@check('postfix: greets 220, relays to smtp-sink', f'apt-get install postfix (log: {STATE}/postfix/maillog)')
def _():
    return send_and_find(E['QPT_POSTFIX_HOST'], E['QPT_POSTFIX_PORT'], 'relay')


# ---------------------------------------------------------------- geoip
@check('geoip: geoip2 and mmdblookup read the generated mmdb files',
       'apt-get install mmdb-bin; pip packages mmdb-writer geoip2')
def _():
    import geoip2.database
    with geoip2.database.Reader(E['QPT_GEOIP_DIR'] + '/GeoLite2-Country.mmdb') as r:
        assert r.country('127.0.0.2').country.iso_code == 'DE'
        assert r.country('127.0.0.1').country.iso_code == 'US'
    r = subprocess.run(['mmdblookup', '--file', E['QPT_GEOIP_DIR'] + '/GeoLite2-Country.mmdb',
                        '--ip', '127.0.0.2', 'country', 'iso_code'], capture_output=True, text=True)
    assert r.returncode == 0 and '"DE"' in r.stdout, r.stdout + r.stderr
    with geoip2.database.Reader(E['QPT_GEOIP_DIR'] + '/GeoLite2-City.mmdb') as r:
        c = r.city('127.0.0.3')
        return f'{c.country.iso_code} {c.location.latitude},{c.location.longitude}'


# ---------------------------------------------------------------- redis
@check('redis: PING/PONG, an atomic INCR with a TTL, redis-server for private instances',
       f'apt-get install redis-server (log: {STATE}/redis/redis.log)')
def _():
    with socket.create_connection((E['QPT_REDIS_HOST'], int(E['QPT_REDIS_PORT'])), timeout=5) as s:
        s.sendall(b'PING\r\n')
        assert s.recv(64) == b'+PONG\r\n'
    import redis
    r = redis.Redis(host=E['QPT_REDIS_HOST'], port=int(E['QPT_REDIS_PORT']), socket_timeout=5)
    key = f'qpt-probe:{os.getpid()}'
    assert r.incr(key) == 1 and r.pexpire(key, 5000) and 0 < r.pttl(key) <= 5000
    r.delete(key)
    out = subprocess.run(['redis-server', '--version'], capture_output=True, text=True).stdout
    assert 'Redis server v=' in out, out
    return out.split()[2]


# ---------------------------------------------------------------- programs the tests run
def probe_tool(name):
    why = tools.tool_problem(name)
    if why:
        raise AssertionError(why.split('\n  fix: ')[0])


for name, (install, _) in tools.TOOLS.items():
    if name == 'exim' and not tools.exim_bin():
        print('---- exim: no QPT_EXIM_BIN in services.env (the exim component did not run); not probed')
        continue
    check(f'tool {name}', install)(lambda name=name: probe_tool(name))


print(f'{results.count(True)} passed, {results.count(False)} failed')
if fixes:
    print('to fix:\n  ' + '\n  '.join(dict.fromkeys(fixes)))
sys.exit(0 if all(results) else 1)
