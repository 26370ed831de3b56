# Probes run inside a bundle by tests/peer_runtimes.rs: each tries one thing the sandbox
# should refuse (or allow) and reports "ok", the value read, or the errno name, as one
# JSON object on stdout. argv[1] is JSON with the paths to try.
import ctypes, errno, json, os, socket, sys

cfg = json.loads(sys.argv[1])
out = {}

def name(e):
    return errno.errorcode.get(e, str(e))

def attempt(f):
    try:
        r = f()
        return "ok" if r is None else r
    except OSError as e:
        return name(e.errno)

def read(p):
    with open(p) as f:
        return f.read()

def touch_same(p):
    st = os.stat(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))

def write_read(d):
    p = os.path.join(d, "probe-output")
    with open(p, "w") as f:
        f.write("written")
    return read(p)

def plant(base):
    d = os.path.join(base, "profiles")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "planted.json"), "w") as f:
        f.write('{"network": {"mode": "open"}}')

def packet():
    socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()

def new_user_namespace():
    libc = ctypes.CDLL(None, use_errno=True)
    pid = os.fork()
    if pid == 0:
        r = libc.unshare(0x10000000)
        os._exit(0 if r == 0 else ctypes.get_errno())
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return "ok" if code == 0 else name(code)

out["uid"] = os.getuid()
out["gid"] = os.getgid()
out["hostname"] = socket.gethostname()
out["workdir_write"] = attempt(lambda: write_read(cfg["work"]))
out["home_write"] = attempt(lambda: write_read(os.environ["HOME"]))
if not cfg.get("host"):
    out["tmp_write"] = attempt(lambda: write_read("/tmp"))
out["ro_write"] = attempt(lambda: touch_same(cfg["ro"]))
if not cfg.get("host"):
    out["usr_write"] = attempt(lambda: touch_same("/usr"))
out["plant_workdir"] = attempt(lambda: plant(os.path.join(cfg["work"], ".omac")))
out["plant_user"] = attempt(lambda: plant(os.path.join(os.environ["HOME"], ".config", "omac")))
out["secret"] = attempt(lambda: read(cfg["secret"]))
out["secret_dir"] = attempt(lambda: sorted(os.listdir(os.path.dirname(cfg["secret"]))))
out["env_file"] = attempt(lambda: read(cfg["env_file"]))
out["interfaces"] = attempt(lambda: sorted(n for _, n in socket.if_nameindex()))
out["af_packet"] = attempt(packet)
if cfg.get("device"):
    out["device"] = attempt(lambda: os.close(os.open(cfg["device"], os.O_RDWR)))
out["unshare_user"] = new_user_namespace()
for line in read("/proc/self/status").splitlines():
    key, _, value = line.partition(":")
    if key in ("NoNewPrivs", "Seccomp", "CapEff"):
        out[key] = value.strip()
print(json.dumps(out, sort_keys=True))
